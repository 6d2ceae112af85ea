//! A worker process: reads commands from stdin, runs its [`Pool`] of clients, writes events
//! to stdout (JSON lines). It exits when stdin closes or its time bound passes.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::messages::{Command, Event, PhaseDone, now_us};
use super::net;
use super::pool::{Outcome, Pool};

/// Most connects one worker keeps in flight at once.
const MAX_CONNECTING: u64 = 1_000;
/// How often the worker paces connects.
const TICK: Duration = Duration::from_millis(5);
/// Most room moves one worker asks for in one pacing step (after a late tick it catches up
/// over the following ticks instead of all at once).
const MAX_MOVES_PER_TICK: u64 = 200;
/// How often the worker reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The phase the parent asked for.
enum Job {
    Connect { count: u64, rate: f64, spawned: u64, started: Instant },
    Disconnect,
    Churn { rate: f64, done: u64, started: Instant, until: Instant },
    Move { rate: f64, done: u64, started: Instant, until: Instant },
}

struct Worker {
    pool: Pool,
    job: Option<Job>,
    phase: PhaseDone,
    out: mpsc::UnboundedSender<Event>,
}

/// Runs a worker until stdin closes or its time bound passes.
pub async fn run() -> anyhow::Result<()> {
    net::raise_file_limit();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await?.context("no configuration on stdin")?;
    let Command::Config(config) = serde_json::from_str(&first)? else {
        bail!("the first command must be the configuration");
    };
    let deadline = tokio::time::sleep(Duration::from_millis(config.max_duration_ms));
    let (out, out_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_events(out_rx));
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut worker =
        Worker { pool: Pool::new(config, events_tx), job: None, phase: PhaseDone::default(), out };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_progress = Instant::now();
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => worker.command(&line)?,
                _ => break,
            },
            Some(event) = events.recv() => worker.client_event(event),
            _ = tick.tick() => worker.pace(),
            () = &mut deadline => break,
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            worker.progress();
        }
    }
    drop(worker);
    let _ = writer.await;
    Ok(())
}

/// Writes events to stdout, one JSON object a line.
async fn write_events(mut events: mpsc::UnboundedReceiver<Event>) {
    let mut stdout = tokio::io::stdout();
    while let Some(event) = events.recv().await {
        let Ok(mut line) = serde_json::to_vec(&event) else {
            continue;
        };
        line.push(b'\n');
        if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
            return;
        }
    }
}

impl Worker {
    fn command(&mut self, line: &str) -> anyhow::Result<()> {
        let command: Command = serde_json::from_str(line).context("bad command from parent")?;
        let now = Instant::now();
        match command {
            Command::Config(_) => bail!("configuration sent twice"),
            Command::Connect { count, rate } => {
                self.start(Job::Connect { count, rate, spawned: 0, started: now });
            }
            Command::Disconnect { count } => {
                self.start(Job::Disconnect);
                for _ in 0..count {
                    if !self.pool.stop_oldest() {
                        break;
                    }
                }
            }
            Command::Churn { rate, duration_ms } => {
                let until = now + Duration::from_millis(duration_ms);
                self.start(Job::Churn { rate, done: 0, started: now, until });
            }
            Command::Move { rate, duration_ms } => {
                let until = now + Duration::from_millis(duration_ms);
                self.start(Job::Move { rate, done: 0, started: now, until });
            }
            Command::Status { truth } => self.send(Event::Status(self.pool.status(truth))),
            Command::RoomStatus => self.send(Event::RoomStatus { rooms: self.pool.room_summaries() }),
            Command::Users => self.send(Event::Users { ids: self.pool.users() }),
            Command::RoomStale { truths, user_truths } => {
                let (stale, without_value) = self.pool.room_stale(&truths, &user_truths);
                self.send(Event::RoomStale { stale, without_value });
            }
            Command::Report => self.send(Event::Report(self.pool.final_report())),
        }
        self.pace();
        Ok(())
    }

    fn start(&mut self, job: Job) {
        self.job = Some(job);
        self.phase = PhaseDone::default();
    }

    fn send(&self, event: Event) {
        let _ = self.out.send(event);
    }

    fn progress(&self) {
        self.send(Event::Progress {
            connected: self.pool.connected,
            attempted: self.pool.report.attempted,
            failed: self.pool.report.errors.values().sum(),
        });
    }

    fn client_event(&mut self, event: super::client::ClientEvent) {
        match self.pool.on_event(event) {
            Some(Outcome::Connected) => {
                self.phase.ok += 1;
                self.phase.last_ok_us = now_us();
            }
            Some(Outcome::Failed) => self.phase.failed += 1,
            Some(Outcome::Moved) if matches!(self.job, Some(Job::Move { .. })) => self.phase.ok += 1,
            Some(Outcome::MoveFailed) if matches!(self.job, Some(Job::Move { .. })) => self.phase.failed += 1,
            _ => {}
        }
        self.pace();
    }

    /// Starts the connects, reconnects and room moves that are due, and reports a finished phase.
    fn pace(&mut self) {
        if matches!(self.job, Some(Job::Move { .. })) {
            return self.pace_moves();
        }
        let room = MAX_CONNECTING.saturating_sub(self.pool.connecting);
        let due_spawns = match &mut self.job {
            None => return,
            Some(Job::Connect { count, rate, spawned, started }) => {
                let scheduled = due_at(*started, Instant::now(), *rate).saturating_add(1);
                let due = scheduled.min(*count).saturating_sub(*spawned).min(room);
                *spawned += due;
                due
            }
            Some(Job::Disconnect | Job::Move { .. }) => 0,
            Some(Job::Churn { rate, done, started, until }) => {
                let now = Instant::now().min(*until);
                let due = due_at(*started, now, *rate).saturating_sub(*done).min(room);
                *done += due;
                due
            }
        };
        let churning = matches!(self.job, Some(Job::Churn { .. }));
        for _ in 0..due_spawns {
            if churning {
                self.pool.stop_oldest();
            }
            if self.phase.first_start_us == 0 {
                self.phase.first_start_us = now_us();
            }
            self.pool.spawn();
        }
        self.finish_if_done();
    }

    /// Asks for the room moves that are due.
    fn pace_moves(&mut self) {
        let Some(Job::Move { rate, done, started, until }) = &mut self.job else { return };
        let now = Instant::now().min(*until);
        let due = due_at(*started, now, *rate).saturating_sub(*done);
        for _ in 0..due.min(MAX_MOVES_PER_TICK) {
            if self.phase.first_start_us == 0 {
                self.phase.first_start_us = now_us();
            }
            // A worker with no client free to move skips the move rather than owing it.
            self.pool.move_random();
            *done += 1;
        }
        self.finish_if_done();
    }

    fn finish_if_done(&mut self) {
        let idle = self.pool.connecting == 0 && self.pool.closing == 0;
        let done = match &self.job {
            Some(Job::Connect { count, spawned, .. }) => spawned >= count && idle,
            Some(Job::Disconnect) => idle,
            Some(Job::Churn { until, .. }) => Instant::now() >= *until && idle,
            Some(Job::Move { until, .. }) => Instant::now() >= *until && self.pool.moves_in_flight() == 0,
            None => false,
        };
        if done {
            self.job = None;
            self.phase.last_change_us = self.pool.last_change_us;
            self.send(Event::PhaseDone(self.phase));
        }
    }
}

/// Operations due between `started` and `now` at `rate` per second (unbounded for 0).
fn due_at(started: Instant, now: Instant, rate: f64) -> u64 {
    if rate <= 0.0 {
        return u64::MAX;
    }
    (now.saturating_duration_since(started).as_secs_f64() * rate).floor() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_follows_the_rate() {
        let start = Instant::now();
        assert_eq!(due_at(start, start, 100.0), 0);
        assert_eq!(due_at(start, start + Duration::from_millis(1_005), 100.0), 100);
        assert_eq!(due_at(start, start + Duration::from_secs(1), 0.0), u64::MAX);
    }
}
