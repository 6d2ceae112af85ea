//! The coordinator on its own: N coordinators sharing one in-memory backend, a recording
//! fan-out, and paused time, so batching, hold-back, retries, pacing and give-back are pinned
//! down exactly. (Everything that needs Redis is tested against a real redis-server in `tests/it`.)

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Command, Coordinator, Fanout, Greeted, PacingPolicy, SocketId, Timing};
use crate::metrics::Metrics;
use crate::presence::{BackendError, BackendEvent, MemoryBackend, PresenceBackend, ShareWrite, Snapshot};
use crate::readmodel::NodeState;

const TIMING: Timing = Timing {
    flush_interval: Duration::from_millis(25),
    pacing: PacingPolicy { emit_interval: Duration::from_millis(100), max_fanout_per_sec: 200_000 },
    heartbeat_interval: Duration::from_secs(1),
};

/// The real in-memory backend, plus the faults a test needs: failing writes, and replies held
/// back after the write was applied (so a reply can arrive after other nodes' announcements).
#[derive(Default)]
struct FaultyBackend {
    inner: MemoryBackend,
    writes: AtomicUsize,
    failures_left: AtomicU32,
    attempts: Mutex<Vec<Instant>>,
    held: Mutex<HashMap<String, watch::Receiver<bool>>>,
}

impl FaultyBackend {
    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn fail_next(&self, writes: u32) {
        self.failures_left.store(writes, Ordering::SeqCst);
    }

    /// Holds `node`'s write replies until the returned sender sends `true`.
    fn hold_replies(&self, node: &str) -> watch::Sender<bool> {
        let (release, held) = watch::channel(false);
        self.held.lock().expect("lock").insert(node.to_owned(), held);
        release
    }
}

#[async_trait]
impl PresenceBackend for FaultyBackend {
    async fn write_share(&self, node: &str, share: i64, floor: u64) -> Result<ShareWrite, BackendError> {
        self.attempts.lock().expect("lock").push(Instant::now());
        let failing =
            self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(BackendError::Pool("injected failure".to_owned()));
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        let reply = self.inner.write_share(node, share, floor).await;
        let held = self.held.lock().expect("lock").get(node).cloned();
        if let Some(mut held) = held {
            let _ = held.wait_for(|released| *released).await;
        }
        reply
    }

    async fn deregister(&self, node: &str, floor: u64) -> Result<Snapshot, BackendError> {
        self.inner.deregister(node, floor).await
    }

    fn subscribe(&self, events: mpsc::Sender<BackendEvent>) {
        self.inner.subscribe(events);
    }

    fn mode(&self) -> &'static str {
        "test"
    }
}

/// Records every broadcast with its (virtual) time.
#[derive(Default)]
struct RecordingFanout {
    sent: Mutex<Vec<(Instant, i64)>>,
    /// What `live()` answers: `None` (cannot tell) unless a test sets it.
    live: Mutex<Option<HashSet<SocketId>>>,
}

#[async_trait]
impl Fanout for RecordingFanout {
    async fn broadcast(&self, users: i64) {
        self.sent.lock().expect("lock").push((Instant::now(), users));
    }

    fn live(&self) -> Option<HashSet<SocketId>> {
        self.live.lock().expect("lock").clone()
    }
}

/// One coordinator of the test cluster.
struct Node {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<NodeState>,
    fanout: Arc<RecordingFanout>,
    greetings: Arc<Mutex<Vec<(u64, i64)>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Node {
    fn start(id: &str, backend: &Arc<FaultyBackend>, timing: Timing) -> Self {
        let fanout = Arc::new(RecordingFanout::default());
        let (coordinator, commands, state) = Coordinator::new(
            id.to_owned(),
            backend.clone(),
            fanout.clone(),
            Arc::new(Metrics::new()),
            timing,
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(coordinator.run(stop.clone()));
        Self { commands, state, fanout, greetings: Arc::default(), stop, task }
    }

    fn join(&self, socket: u64) {
        self.join_greeted(socket, Greeted::Delivered);
    }

    /// A join whose greeting finds the transport in the given state.
    fn join_greeted(&self, socket: u64, outcome: Greeted) {
        let greetings = self.greetings.clone();
        let greet = Box::new(move |users| {
            greetings.lock().expect("lock").push((socket, users));
            outcome
        });
        self.commands.send(Command::Join { id: SocketId(socket.into()), greet }).expect("coordinator runs");
    }

    fn leave(&self, socket: u64) {
        self.commands.send(Command::Leave { id: SocketId(socket.into()) }).expect("coordinator runs");
    }

    fn shown(&self) -> Option<i64> {
        self.state.borrow().users
    }

    fn broadcasts(&self) -> Vec<(Instant, i64)> {
        self.fanout.sent.lock().expect("lock").clone()
    }

    fn greeting_of(&self, socket: u64) -> Option<i64> {
        self.greetings.lock().expect("lock").iter().find(|(s, _)| *s == socket).map(|(_, users)| *users)
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("coordinator task");
    }
}

/// Waits, in virtual time, until `condition` holds; panics after `deadline` of virtual time.
async fn until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < deadline, "not within {deadline:?}: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

const SOON: Duration = Duration::from_secs(2);

#[tokio::test(start_paused = true)]
async fn many_joins_within_one_flush_interval_are_one_write() {
    let backend = Arc::new(FaultyBackend::default());
    let node = Node::start("a", &backend, TIMING);
    until("registered", SOON, || node.shown() == Some(0)).await;
    let before = backend.writes();
    for socket in 0..100 {
        node.join(socket);
    }
    until("the batch is written", SOON, || backend.writes() > before).await;
    tokio::time::sleep(TIMING.flush_interval * 3).await;
    assert_eq!(backend.writes() - before, 1, "100 joins, one write");
    assert_eq!(node.shown(), Some(100));
}

#[tokio::test(start_paused = true)]
async fn announcements_during_a_write_wait_for_its_reply() {
    let backend = Arc::new(FaultyBackend::default());
    let a = Node::start("a", &backend, TIMING);
    let b = Node::start("b", &backend, TIMING);
    (0..5).for_each(|s| a.join(s));
    until("settled at 5", SOON, || a.shown() == Some(5) && b.shown() == Some(5)).await;

    let release = backend.hold_replies("a");
    a.join(5);
    until("a's write has landed in the backend", SOON, || b.shown() == Some(6)).await;
    b.join(100);
    b.join(101);
    until("b shows its own joins", SOON, || b.shown() == Some(8)).await;
    // b's announcement (total 8, counting a's share as 6) reached a while a's own write was in
    // flight. Applied at once, a would show 8 - 5 + 6 = 9: one person counted twice.
    tokio::time::sleep(TIMING.flush_interval * 4).await;
    assert_eq!(a.shown(), Some(6), "held back until a's reply");
    release.send_replace(true);
    until("a shows the cluster total", SOON, || a.shown() == Some(8)).await;
    assert!(a.broadcasts().iter().all(|&(_, users)| users <= 8), "never overcounted: {:?}", a.broadcasts());
}

#[tokio::test(start_paused = true)]
async fn a_failing_backend_is_retried_with_backoff_then_reconciled() {
    let backend = Arc::new(FaultyBackend::default());
    let node = Node::start("a", &backend, TIMING);
    until("registered", SOON, || node.shown() == Some(0)).await;
    backend.fail_next(4);
    let first_attempt = backend.attempts.lock().expect("lock").len();
    node.join(1);
    until("degraded", SOON, || node.state.borrow().degraded).await;
    assert_eq!(node.shown(), Some(1), "local changes still show while degraded");
    until("reconciled", Duration::from_secs(5), || !node.state.borrow().degraded).await;
    let attempts = backend.attempts.lock().expect("lock")[first_attempt..].to_vec();
    let gaps: Vec<u128> = attempts.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(gaps.len(), 4, "four failures, then the write that succeeded: {gaps:?}");
    for (gap, backoff) in gaps.iter().zip([100, 200, 400, 800]) {
        // A retry waits for its backoff, then for the next flush tick.
        assert!((backoff..backoff + 30).contains(gap), "gap {gap} ms for a {backoff} ms backoff: {gaps:?}");
    }
    assert_eq!(node.shown(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_greeted_with_a_value_the_others_never_got_gets_the_settled_one() {
    let backend = Arc::new(FaultyBackend::default());
    let a = Node::start("a", &backend, TIMING);
    let b = Node::start("b", &backend, TIMING);
    (0..10).for_each(|s| a.join(s));
    (100..102).for_each(|s| b.join(s));
    until("a broadcast 12", SOON, || a.broadcasts().last().map(|b| b.1) == Some(12)).await;

    // One leaves on b while one arrives on a: a greets the newcomer with 13 before it hears of
    // the leave, then the total settles back at 12, which a had already broadcast.
    b.leave(100);
    a.join(10);
    until("the newcomer is greeted", SOON, || a.greeting_of(10).is_some()).await;
    let greeted_at = Instant::now();
    assert_eq!(a.greeting_of(10), Some(13));
    until("a settles at 12", SOON, || a.shown() == Some(12)).await;
    until("12 is broadcast again, reaching the newcomer", SOON, || {
        a.broadcasts().iter().any(|&(at, users)| users == 12 && at >= greeted_at)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn broadcasts_stay_within_the_fanout_budget_and_the_last_value_goes_out() {
    let backend = Arc::new(FaultyBackend::default());
    let timing = Timing {
        pacing: PacingPolicy { emit_interval: Duration::from_millis(100), max_fanout_per_sec: 100 },
        ..TIMING
    };
    let node = Node::start("a", &backend, timing);
    (0..50).for_each(|s| node.join(s));
    until("settled at 50", SOON, || node.broadcasts().last().map(|b| b.1) == Some(50)).await;
    let start = Instant::now();
    // A change every 20 ms for 2 s; 50 clients at 100 messages/s: one broadcast per 500 ms.
    for step in 0..100 {
        if step % 2 == 0 {
            node.join(1000 + step)
        } else {
            node.leave(1000 + step - 1)
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.join(5000);
    until("the last value (51) goes out", SOON, || node.broadcasts().last().map(|b| b.1) == Some(51)).await;
    let during: Vec<(Instant, i64)> = node.broadcasts().into_iter().filter(|(at, _)| *at > start).collect();
    let gaps: Vec<u128> = during.windows(2).map(|w| (w[1].0 - w[0].0).as_millis()).collect();
    assert!(gaps.iter().all(|&gap| gap >= 500), "at most one broadcast per 500 ms: {gaps:?}");
    assert!(during.len() <= 2000 / 500 + 2, "{} broadcasts in 2 s", during.len());
}

#[tokio::test(start_paused = true)]
async fn stopping_gives_the_share_back_in_one_step() {
    let backend = Arc::new(FaultyBackend::default());
    let a = Node::start("a", &backend, TIMING);
    let b = Node::start("b", &backend, TIMING);
    (0..10).for_each(|s| a.join(s));
    (100..102).for_each(|s| b.join(s));
    until("settled at 12", SOON, || b.shown() == Some(12)).await;
    a.stop().await;
    // No heartbeat deadline is involved: b hears the give-back's announcement directly.
    until("b shows 2", TIMING.flush_interval * 2, || b.shown() == Some(2)).await;
}

#[tokio::test(start_paused = true)]
async fn before_the_backend_answers_no_number_is_shown() {
    let backend = Arc::new(FaultyBackend::default());
    backend.fail_next(3);
    let node = Node::start("a", &backend, TIMING);
    node.join(1);
    until("started, degraded", SOON, || node.state.borrow().started && node.state.borrow().degraded).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(node.shown(), None);
    assert_eq!(node.greeting_of(1), None, "no greeting without a number");
    assert!(node.broadcasts().is_empty());
    until("the first total reaches the client", SOON, || node.broadcasts().last().map(|b| b.1) == Some(1))
        .await;
    assert!(!node.state.borrow().degraded);
}

#[tokio::test(start_paused = true)]
async fn a_socket_whose_greeting_finds_its_transport_closed_is_not_counted() {
    let backend = Arc::new(FaultyBackend::default());
    let node = Node::start("a", &backend, TIMING);
    (0..3).for_each(|s| node.join(s));
    until("settled at 3", SOON, || node.shown() == Some(3)).await;
    // socketioxide said "connected", but the transport had closed before the handler ran.
    node.join_greeted(3, Greeted::Gone);
    until("the greeting was tried", SOON, || node.greeting_of(3).is_some()).await;
    tokio::time::sleep(TIMING.flush_interval * 2).await;
    assert_eq!(node.shown(), Some(3));
    node.leave(3); // a late disconnect of the same socket changes nothing
    node.leave(2);
    until("a real leave still counts", SOON, || node.shown() == Some(2)).await;
}

#[tokio::test(start_paused = true)]
async fn the_sweep_drops_counted_sockets_the_socket_layer_no_longer_holds() {
    let backend = Arc::new(FaultyBackend::default());
    let node = Node::start("a", &backend, TIMING);
    (0..5).for_each(|s| node.join(s));
    until("settled at 5", SOON, || node.shown() == Some(5)).await;
    // Sockets 3 and 4 vanished without a disconnect (e.g. before any count was known to greet).
    let live: HashSet<SocketId> = (0..3u64).map(|s| SocketId(s.into())).collect();
    *node.fanout.live.lock().expect("lock") = Some(live);
    until("swept within one interval", super::SWEEP_INTERVAL + SOON, || node.shown() == Some(3)).await;
}
