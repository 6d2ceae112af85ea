//! Running one round: its steps start in plan order, at most `--concurrency` at a time, each
//! against its node; held clients that join go into the pool, those that leave come out of it,
//! and those that move between rooms go back into it.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::held::{self, Held, HeldPool};
use super::ops::Op;
use super::plan::Step;
use super::{polling, raw};
use crate::client::ClientSpec;
use crate::messages::Target;
use crate::rooms::{NO_ROOM, RoomPlan};

/// Slack on top of the per-sequence bounds before a round gives up on its stragglers.
const ROUND_SLACK: Duration = Duration::from_secs(10);

/// Counts of one kind of sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindCount {
    /// Sequences run to the end.
    pub run: u64,
    /// Sequences that failed on the way (their failure kinds are in the report's `errors`).
    pub failed: u64,
    /// Held-pool sequences with no held client to work on.
    pub skipped: u64,
    /// Hunt rounds that ran this kind.
    pub rounds: u64,
    /// Of those, rounds that drifted.
    pub drift_rounds: u64,
}

/// What all rounds did so far.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Per operation.
    pub per_kind: BTreeMap<Op, KindCount>,
    /// Failures by `operation: kind`.
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    /// Sequences started (run, failed or skipped).
    pub fn sequences(&self) -> u64 {
        self.per_kind.values().map(|count| count.run + count.failed + count.skipped).sum()
    }

    /// Books a hunt round against every kind it ran.
    pub fn round_of(&mut self, steps: &[Step], drifted: bool) {
        for (op, _) in super::plan::census(steps) {
            let count = self.per_kind.entry(op).or_default();
            count.rounds += 1;
            count.drift_rounds += u64::from(drifted);
        }
    }

    fn skipped(&mut self, op: Op) {
        self.per_kind.entry(op).or_default().skipped += 1;
    }

    fn record(&mut self, op: Op, result: &Result<(), String>) {
        let count = self.per_kind.entry(op).or_default();
        match result {
            Ok(()) => count.run += 1,
            Err(kind) => {
                count.failed += 1;
                *self.errors.entry(format!("{op}: {kind}")).or_insert(0) += 1;
            }
        }
    }
}

/// How a sequence ended, and the held client it leaves in the pool (joined, or worked on).
type Finished = (Result<(), String>, Option<Held>);
type Sequence = Pin<Box<dyn Future<Output = Finished> + Send>>;

/// Runs rounds against a fixed set of nodes.
#[derive(Debug)]
pub struct Executor {
    targets: Vec<Arc<Target>>,
    polling_urls: Vec<String>,
    http: reqwest::Client,
    sources: Vec<IpAddr>,
    next_source: usize,
    timeout: Duration,
    concurrency: usize,
    rooms: Arc<RoomPlan>,
}

impl Executor {
    /// An executor for `targets`, binding sockets to `sources` in turn (empty: the kernel's
    /// choice), with `rooms` for the room sequences; each sequence is bounded by `timeout`.
    pub fn new(
        targets: Vec<Target>,
        sources: Vec<IpAddr>,
        timeout: Duration,
        concurrency: usize,
        rooms: RoomPlan,
    ) -> anyhow::Result<Self> {
        let polling_urls = targets.iter().map(polling::polling_url).collect();
        let http = reqwest::Client::builder().timeout(timeout).pool_max_idle_per_host(8).build()?;
        let targets = targets.into_iter().map(Arc::new).collect();
        let rooms = Arc::new(rooms);
        Ok(Self { targets, polling_urls, http, sources, next_source: 0, timeout, concurrency, rooms })
    }

    /// Runs `steps` and waits for all of them (or gives up on stragglers after the bound).
    pub async fn run(&mut self, steps: &[Step], pool: &mut HeldPool, tally: &mut Tally) {
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut running: JoinSet<(Op, Finished)> = JoinSet::new();
        let deadline = Instant::now() + self.timeout * 2 + ROUND_SLACK;
        for step in steps {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            while let Some(Ok((op, result))) = running.try_join_next() {
                finish(op, result, pool, tally);
            }
            let Some(sequence) = self.sequence(step, pool) else {
                tally.skipped(step.op);
                continue;
            };
            let op = step.op;
            running.spawn(async move {
                let result = sequence.await;
                drop(permit);
                (op, result)
            });
        }
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, running.join_next()).await {
                Ok(Some(Ok((op, result)))) => finish(op, result, pool, tally),
                Ok(Some(Err(_))) => {}
                Ok(None) => return,
                Err(_) => {
                    *tally.errors.entry("round: stragglers abandoned".to_owned()).or_insert(0) +=
                        running.len() as u64;
                    running.abort_all();
                    return;
                }
            }
        }
    }

    /// The future of one step, or `None` when a held-pool step finds no held client.
    fn sequence(&mut self, step: &Step, pool: &mut HeldPool) -> Option<Sequence> {
        let (node, op, pick) = (step.node, step.op, step.pick);
        let timeout = self.timeout;
        let rooms = self.rooms.count;
        let sequence: Sequence = match op {
            Op::Join => Box::pin(join(self.client_spec(node), node, NO_ROOM)),
            Op::JoinRoom => Box::pin(join(self.client_spec(node), node, pick % rooms)),
            Op::Leave => {
                let leaving = pool.take(node, pick)?;
                Box::pin(async move { (leaving.leave().await, None) })
            }
            Op::Reconnect => {
                let leaving = pool.take(node, pick)?;
                let (spec, room) = (self.client_spec(node), leaving.room().unwrap_or(NO_ROOM));
                Box::pin(async move {
                    match leaving.leave().await {
                        Ok(()) => join(spec, node, room).await,
                        Err(kind) => (Err(kind), None),
                    }
                })
            }
            Op::RoomJoin => {
                let mut held = pool.take(node, pick)?;
                let mut room = pick % rooms;
                if held.room() == Some(room) {
                    room = (room + 1) % rooms;
                }
                Box::pin(async move { (held.move_to(room, timeout).await, Some(held)) })
            }
            Op::RoomLeave => {
                let mut held = pool.take_where(node, pick, |held| held.room().is_some())?;
                Box::pin(async move { (held.move_to(NO_ROOM, timeout).await, Some(held)) })
            }
            Op::PollConnectDisconnect | Op::PollConnectDisconnectBatched | Op::PollConnectDrop => {
                let http = self.http.clone();
                let url = self.polling_urls[node].clone();
                Box::pin(async move { (polling::run(op, &http, &url).await, None) })
            }
            _ => {
                let target = Arc::clone(&self.targets[node]);
                let source = self.next_source();
                let rooms = Arc::clone(&self.rooms);
                Box::pin(async move {
                    let bounded =
                        tokio::time::timeout(timeout, raw::run(op, &target, source, &rooms, pick)).await;
                    (bounded.unwrap_or_else(|_| Err("timeout".to_owned())), None)
                })
            }
        };
        Some(sequence)
    }

    fn client_spec(&mut self, node: usize) -> ClientSpec {
        ClientSpec {
            target: Arc::clone(&self.targets[node]),
            source: self.next_source(),
            timeout: self.timeout,
            rooms: Some(Arc::clone(&self.rooms)),
            token: None,
        }
    }

    fn next_source(&mut self) -> Option<IpAddr> {
        let source = self.sources.get(self.next_source % self.sources.len().max(1)).copied();
        self.next_source = self.next_source.wrapping_add(1);
        source
    }
}

async fn join(spec: ClientSpec, node: usize, room: u32) -> Finished {
    match held::join(spec, node, room).await {
        Ok(held) => (Ok(()), Some(held)),
        Err(kind) => (Err(kind), None),
    }
}

/// Books a finished sequence: a held client it joined or worked on goes (back) into the pool.
fn finish(op: Op, (result, held): Finished, pool: &mut HeldPool, tally: &mut Tally) {
    tally.record(op, &result);
    if let Some(held) = held {
        pool.add(held);
    }
}
