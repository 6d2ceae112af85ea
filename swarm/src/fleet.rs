//! The parent's side of the workers: spawning them (this same binary, re-executed), sending
//! commands and gathering one answer from each.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command as Process};
use tokio::sync::mpsc;

use super::messages::{Command, Event, WorkerConfig};
use super::progress::Progress;

/// How long workers get to exit once their stdin is closed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// The hidden flag that turns `swarm` into a worker (its value: the parent's pid).
pub const WORKER_FLAG: &str = "--worker-of";

struct Worker {
    child: Child,
    stdin: ChildStdin,
}

/// Live counters of one worker, from its progress events.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    connected: u64,
    failed: u64,
}

/// The running workers.
pub struct Fleet {
    workers: Vec<Worker>,
    events: mpsc::UnboundedReceiver<(usize, Option<Event>)>,
    counters: Vec<Counters>,
    progress: Progress,
}

impl Fleet {
    /// Starts one worker per configuration and sends it its configuration.
    pub async fn spawn(configs: Vec<WorkerConfig>, progress: Progress) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut workers = Vec::with_capacity(configs.len());
        for config in configs {
            let index = config.index;
            let mut child = Process::new(&exe)
                .args(["swarm", WORKER_FLAG, &std::process::id().to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .process_group(0)
                .spawn()
                .context("cannot start a swarm worker")?;
            let stdin = child.stdin.take().context("worker has no stdin")?;
            let stdout = child.stdout.take().context("worker has no stdout")?;
            tokio::spawn(read_events(index, stdout, events_tx.clone()));
            let mut worker = Worker { child, stdin };
            write_line(&mut worker.stdin, &Command::Config(config)).await?;
            workers.push(worker);
        }
        let counters = vec![Counters::default(); workers.len()];
        Ok(Self { workers, events, counters, progress })
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// The progress bar the fleet updates.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Sends `commands[i]` to worker `i`.
    pub async fn send_each(&mut self, commands: Vec<Command>) -> anyhow::Result<()> {
        for (worker, command) in self.workers.iter_mut().zip(commands) {
            write_line(&mut worker.stdin, &command).await?;
        }
        Ok(())
    }

    /// Sends the same command to every worker.
    pub async fn broadcast(&mut self, command: &Command) -> anyhow::Result<()> {
        for worker in &mut self.workers {
            write_line(&mut worker.stdin, command).await?;
        }
        Ok(())
    }

    /// Waits for one answer that `pick` accepts from every worker, in worker order.
    pub async fn gather<T>(&mut self, pick: impl Fn(Event) -> Option<T>) -> anyhow::Result<Vec<T>> {
        let mut answers: Vec<Option<T>> = (0..self.workers.len()).map(|_| None).collect();
        while answers.iter().any(Option::is_none) {
            let Some((index, event)) = self.events.recv().await else {
                bail!("the swarm workers exited early");
            };
            let Some(event) = event else {
                bail!("swarm worker {index} exited early");
            };
            if let Event::Progress { connected, failed, .. } = event {
                self.count(index, connected, failed);
            } else if let (Some(answer), Some(slot)) = (pick(event), answers.get_mut(index)) {
                *slot = Some(answer);
            }
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// Takes progress events until `duration` has passed.
    pub async fn idle(&mut self, duration: Duration) {
        let sleep = tokio::time::sleep(duration);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                event = self.events.recv() => match event {
                    Some((index, Some(Event::Progress { connected, failed, .. }))) => {
                        self.count(index, connected, failed);
                    }
                    Some(_) => {}
                    None => return (&mut sleep).await,
                },
            }
        }
    }

    fn count(&mut self, index: usize, connected: u64, failed: u64) {
        if let Some(counters) = self.counters.get_mut(index) {
            *counters = Counters { connected, failed };
        }
        let connected = self.counters.iter().map(|counters| counters.connected).sum();
        let failed = self.counters.iter().map(|counters| counters.failed).sum();
        self.progress.update(connected, failed);
    }

    /// Closes every worker's stdin (they exit), waits a little, then kills what is left.
    pub async fn shutdown(self) {
        for mut worker in self.workers {
            drop(worker.stdin);
            let exited = tokio::time::timeout(EXIT_GRACE, worker.child.wait()).await;
            if !matches!(exited, Ok(Ok(_))) {
                let _ = worker.child.kill().await;
            }
        }
    }
}

async fn write_line(stdin: &mut ChildStdin, command: &Command) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(command)?;
    line.push(b'\n');
    stdin.write_all(&line).await.context("a swarm worker stopped reading")?;
    stdin.flush().await?;
    Ok(())
}

/// Forwards a worker's events to the fleet until its stdout closes.
async fn read_events(
    index: usize,
    stdout: tokio::process::ChildStdout,
    events: mpsc::UnboundedSender<(usize, Option<Event>)>,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<Event>(&line) {
            Ok(event) => {
                if events.send((index, Some(event))).is_err() {
                    return;
                }
            }
            Err(error) => eprintln!("rollcall swarm: bad line from worker {index}: {error}"),
        }
    }
    let _ = events.send((index, None));
}
