//! The coordinator on its own: N coordinators sharing one in-memory backend, a recording
//! fan-out, and paused time, so batching, hold-back, retries, pacing and give-back are pinned
//! down exactly. (Everything that needs Redis is tested against a real redis-server in `tests/it`.)

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    Clients, Command, Config, Coordinator, Greeted, Limits, PacingPolicy, RoomReply, SocketId, Timing,
};
use crate::count::RoomName;
use crate::metrics::Metrics;
use crate::presence::{
    BackendError, BackendEvent, Counts, Flush, FlushReply, Member, MemberCount, MemoryBackend, Page,
    PresenceBackend, RoomCount, RoomPolicy,
};
use crate::readmodel::NodeState;

mod pacing;
mod proptests;

const TIMING: Timing = Timing {
    flush_interval: Duration::from_millis(25),
    pacing: PacingPolicy { emit_interval: Duration::from_millis(100), max_fanout_per_sec: 200_000 },
    heartbeat_interval: Duration::from_secs(1),
};

const POLICY: RoomPolicy = RoomPolicy { groups: 4, max_members_listed: 100, events: None };

fn config(timing: Timing) -> Config {
    Config {
        timing,
        limits: Limits { max_rooms_per_client: 3, global_counts_users: false, token_leeway_secs: 0 },
        groups: POLICY.groups,
        hints: None,
    }
}

/// The real in-memory backend, plus the faults a test needs: failing flushes, and replies held
/// back after the flush was applied (so a reply can arrive after other nodes' announcements).
struct FaultyBackend {
    inner: MemoryBackend,
    writes: AtomicUsize,
    failures_left: AtomicU32,
    attempts: Mutex<Vec<Instant>>,
    held: Mutex<HashMap<String, watch::Receiver<bool>>>,
}

impl Default for FaultyBackend {
    fn default() -> Self {
        Self {
            inner: MemoryBackend::new(POLICY),
            writes: AtomicUsize::default(),
            failures_left: AtomicU32::default(),
            attempts: Mutex::default(),
            held: Mutex::default(),
        }
    }
}

impl FaultyBackend {
    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn fail_next(&self, writes: u32) {
        self.failures_left.store(writes, Ordering::SeqCst);
    }

    /// Holds `node`'s flush replies until the returned sender sends `true`.
    fn hold_replies(&self, node: &str) -> watch::Sender<bool> {
        let (release, held) = watch::channel(false);
        self.held.lock().expect("lock").insert(node.to_owned(), held);
        release
    }
}

#[async_trait]
impl PresenceBackend for FaultyBackend {
    async fn flush(&self, flush: &Flush) -> Result<FlushReply, BackendError> {
        self.attempts.lock().expect("lock").push(Instant::now());
        let failing =
            self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(BackendError::Pool("injected failure".to_owned()));
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        let reply = self.inner.flush(flush).await;
        let held = self.held.lock().expect("lock").get(&*flush.node).cloned();
        if let Some(mut held) = held {
            let _ = held.wait_for(|released| *released).await;
        }
        reply
    }

    async fn deregister(&self, node: &str, incarnation: u64, groups: &[u16]) -> Result<(), BackendError> {
        self.inner.deregister(node, incarnation, groups).await
    }

    fn subscribe(&self, events: mpsc::Sender<BackendEvent>) {
        self.inner.subscribe(events);
    }

    async fn room_counts(&self, rooms: &[RoomName]) -> Result<Vec<Counts>, BackendError> {
        self.inner.room_counts(rooms).await
    }

    async fn list_rooms(
        &self,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RoomCount>, BackendError> {
        self.inner.list_rooms(prefix, limit, cursor).await
    }

    async fn members(
        &self,
        room: &RoomName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<MemberCount>, BackendError> {
        self.inner.members(room, limit, cursor).await
    }

    async fn user_connections(&self, user: &str) -> Result<i64, BackendError> {
        self.inner.user_connections(user).await
    }

    fn mode(&self) -> &'static str {
        "test"
    }
}

/// Records every broadcast and greeting with its (virtual) time.
#[derive(Default)]
struct RecordingClients {
    sent: Mutex<Vec<(Instant, i64)>>,
    greetings: Mutex<Vec<(SocketId, i64)>>,
    room_sent: Mutex<Vec<(Instant, RoomName, Counts)>>,
    room_greetings: Mutex<Vec<(SocketId, RoomName, Counts)>>,
    /// Sockets whose transport is closed: greeting them reports `Gone`.
    closed: Mutex<HashSet<SocketId>>,
    /// What `live()` answers: `None` (cannot tell) unless a test sets it.
    live: Mutex<Option<HashSet<SocketId>>>,
    /// Sockets the coordinator closed.
    disconnected: Mutex<Vec<SocketId>>,
    /// How long each `refresh users` broadcast takes (virtual time): a slow fan-out.
    broadcast_delay: Mutex<Duration>,
}

impl RecordingClients {
    fn outcome(&self, socket: SocketId) -> Greeted {
        if self.closed.lock().expect("lock").contains(&socket) { Greeted::Gone } else { Greeted::Delivered }
    }
}

#[async_trait]
impl Clients for RecordingClients {
    async fn broadcast(&self, value: i64) {
        self.sent.lock().expect("lock").push((Instant::now(), value));
        let delay = *self.broadcast_delay.lock().expect("lock");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    fn greet(&self, socket: SocketId, value: i64) -> Greeted {
        self.greetings.lock().expect("lock").push((socket, value));
        self.outcome(socket)
    }

    async fn broadcast_room(&self, room: &RoomName, counts: Counts) {
        self.room_sent.lock().expect("lock").push((Instant::now(), room.clone(), counts));
    }

    fn greet_room(&self, socket: SocketId, room: &RoomName, counts: Counts) -> Greeted {
        self.room_greetings.lock().expect("lock").push((socket, room.clone(), counts));
        self.outcome(socket)
    }

    fn enter(&self, _: SocketId, _: &RoomName, _: bool) {}

    fn disconnect(&self, socket: SocketId) {
        self.disconnected.lock().expect("lock").push(socket);
    }

    fn exit(&self, _: SocketId, _: &RoomName) {}

    async fn member_change(&self, _: &RoomName, _: &Member, _: bool) {}

    fn live(&self) -> Option<HashSet<SocketId>> {
        self.live.lock().expect("lock").clone()
    }
}

/// One coordinator of the test cluster.
struct Node {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<NodeState>,
    clients: Arc<RecordingClients>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn id(socket: u64) -> SocketId {
    SocketId(socket.into())
}

fn room(name: &str) -> RoomName {
    RoomName::new(name).expect("valid room")
}

impl Node {
    fn start(name: &str, backend: &Arc<FaultyBackend>, timing: Timing) -> Self {
        let clients = Arc::new(RecordingClients::default());
        let metrics = Arc::new(Metrics::new());
        let (coordinator, commands, state) =
            Coordinator::new(name.into(), backend.clone(), clients.clone(), metrics.clone(), config(timing));
        let stop = CancellationToken::new();
        let task = tokio::spawn(coordinator.run(stop.clone()));
        Self { commands, state, clients, metrics, stop, task }
    }

    fn join(&self, socket: u64) {
        self.connect_in(socket, &[]);
    }

    fn connect_in(&self, socket: u64, rooms: &[&str]) {
        let rooms = rooms.iter().map(|r| room(r)).collect();
        self.commands
            .send(Command::Connect { id: id(socket), identity: None, expires: None, rooms })
            .expect("coordinator runs");
    }

    /// A connect whose transport is already closed when the coordinator greets it.
    fn join_closed(&self, socket: u64) {
        self.clients.closed.lock().expect("lock").insert(id(socket));
        self.join(socket);
    }

    fn leave(&self, socket: u64) {
        self.commands.send(Command::Disconnect { id: id(socket) }).expect("coordinator runs");
    }

    /// Sends a `join` event; the ack lands in the returned slot.
    fn join_room(&self, socket: u64, name: &str) -> Arc<Mutex<Option<RoomReply>>> {
        self.join_room_with(socket, name, false)
    }

    /// Sends a `join` event, with `members` asked for or not.
    fn join_room_with(&self, socket: u64, name: &str, members: bool) -> Arc<Mutex<Option<RoomReply>>> {
        let slot: Arc<Mutex<Option<RoomReply>>> = Arc::default();
        let ack = slot.clone();
        let reply = Box::new(move |r| *ack.lock().expect("lock") = Some(r));
        let command = Command::Join { id: id(socket), room: room(name), members, reply };
        self.commands.send(command).expect("coordinator runs");
        slot
    }

    /// Sends a `leave` event; the ack lands in the returned slot.
    fn leave_room(&self, socket: u64, name: &str) -> Arc<Mutex<Option<RoomReply>>> {
        let slot: Arc<Mutex<Option<RoomReply>>> = Arc::default();
        let ack = slot.clone();
        let reply = Box::new(move |r| *ack.lock().expect("lock") = Some(r));
        self.commands
            .send(Command::Leave { id: id(socket), room: room(name), reply })
            .expect("coordinator runs");
        slot
    }

    fn shown(&self) -> Option<i64> {
        self.state.borrow().users
    }

    fn broadcasts(&self) -> Vec<(Instant, i64)> {
        self.clients.sent.lock().expect("lock").clone()
    }

    fn greeting_of(&self, socket: u64) -> Option<i64> {
        let greetings = self.clients.greetings.lock().expect("lock");
        greetings.iter().find(|(s, _)| *s == id(socket)).map(|(_, users)| *users)
    }

    /// The last `room users` this node broadcast for `name`.
    fn last_room_broadcast(&self, name: &str) -> Option<Counts> {
        let sent = self.clients.room_sent.lock().expect("lock");
        sent.iter().rev().find(|(_, r, _)| r.as_str() == name).map(|(_, _, c)| *c)
    }

    fn room_greeting_of(&self, socket: u64, name: &str) -> Option<Counts> {
        let greetings = self.clients.room_greetings.lock().expect("lock");
        greetings.iter().find(|(s, r, _)| *s == id(socket) && r.as_str() == name).map(|(_, _, c)| *c)
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("coordinator task");
    }
}

fn conns(connections: i64) -> Counts {
    Counts { connections, users: connections }
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
    node.join_closed(3);
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
    *node.clients.live.lock().expect("lock") = Some(live);
    until("swept within one interval", super::SWEEP_INTERVAL + SOON, || node.shown() == Some(3)).await;
}

#[tokio::test(start_paused = true)]
async fn room_members_on_two_nodes_see_the_room_count_and_only_theirs() {
    let backend = Arc::new(FaultyBackend::default());
    let a = Node::start("a", &backend, TIMING);
    let b = Node::start("b", &backend, TIMING);
    a.connect_in(1, &["doc"]);
    until("a's member is greeted once the room's count is known", SOON, || {
        a.room_greeting_of(1, "doc").is_some()
    })
    .await;
    assert_eq!(a.room_greeting_of(1, "doc"), Some(conns(1)), "its own connection included");
    b.connect_in(2, &["doc"]);
    b.connect_in(3, &["other"]);
    until("b's member sees 2", SOON, || b.room_greeting_of(2, "doc") == Some(conns(2))).await;
    until("a broadcasts 2 in doc", SOON, || a.last_room_broadcast("doc") == Some(conns(2))).await;
    assert_eq!(a.last_room_broadcast("other"), None, "a has no member in other");
    b.leave(2);
    until("a broadcasts 1 in doc", SOON, || a.last_room_broadcast("doc") == Some(conns(1))).await;
    assert_eq!(a.shown(), Some(2), "the global count is unchanged by rooms");
}

#[tokio::test(start_paused = true)]
async fn join_and_leave_events_are_acked_with_the_counts_and_counted_once() {
    let backend = Arc::new(FaultyBackend::default());
    let node = Node::start("a", &backend, TIMING);
    node.join(1);
    node.join(2);
    until("registered", SOON, || node.shown() == Some(2)).await;
    let first = node.join_room(1, "board");
    until("first join acked", SOON, || first.lock().expect("lock").is_some()).await;
    assert_eq!(*first.lock().expect("lock"), Some(RoomReply::Counts(room("board"), conns(1))));
    let twice = node.join_room(1, "board");
    let second = node.join_room(2, "board");
    until("acked", SOON, || twice.lock().expect("lock").is_some() && second.lock().expect("lock").is_some())
        .await;
    assert_eq!(
        *twice.lock().expect("lock"),
        Some(RoomReply::Counts(room("board"), conns(1))),
        "joining twice is harmless"
    );
    assert_eq!(*second.lock().expect("lock"), Some(RoomReply::Counts(room("board"), conns(2))));
    let left = node.leave_room(1, "board");
    until("leave acked", SOON, || left.lock().expect("lock").is_some()).await;
    assert_eq!(*left.lock().expect("lock"), Some(RoomReply::Counts(room("board"), conns(1))));
    let nowhere = node.leave_room(1, "nowhere");
    until("leave acked", SOON, || nowhere.lock().expect("lock").is_some()).await;
    assert_eq!(*nowhere.lock().expect("lock"), Some(RoomReply::NotFollowed(room("nowhere"))));
    until("the backend holds 1 in board", SOON, || {
        backend.inner.room_counts(&[room("board")]).now_or_never().and_then(Result::ok)
            == Some(vec![conns(1)])
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_join_beyond_the_room_limit_is_refused_and_changes_nothing() {
    let backend = Arc::new(FaultyBackend::default());
    let node = Node::start("a", &backend, TIMING);
    node.connect_in(1, &["r1", "r2", "r3"]);
    until("registered", SOON, || node.shown() == Some(1)).await;
    let fourth = node.join_room(1, "r4");
    until("acked", SOON, || fourth.lock().expect("lock").is_some()).await;
    assert!(
        matches!(&*fourth.lock().expect("lock"), Some(RoomReply::Refused(why)) if why.contains("3 rooms"))
    );
    tokio::time::sleep(TIMING.flush_interval * 3).await;
    let counts = backend.inner.room_counts(&[room("r3"), room("r4")]).await.expect("counts");
    assert_eq!(counts, [conns(1), conns(0)]);
}

#[tokio::test(start_paused = true)]
async fn stopping_gives_every_room_back_in_one_step() {
    let backend = Arc::new(FaultyBackend::default());
    let a = Node::start("a", &backend, TIMING);
    let b = Node::start("b", &backend, TIMING);
    for socket in 0..6 {
        a.connect_in(socket, &["x", "y"]);
    }
    b.connect_in(100, &["x"]);
    until("b sees 7 in x", SOON, || b.last_room_broadcast("x") == Some(conns(7))).await;
    a.stop().await;
    until("b sees 1 in x", SOON, || b.last_room_broadcast("x") == Some(conns(1))).await;
    let counts = backend.inner.room_counts(&[room("y")]).await.expect("counts");
    assert_eq!(counts, [conns(0)], "y is empty, and gone");
    let page = backend.inner.list_rooms("", 10, None).await.expect("list");
    assert_eq!(page.items.iter().map(|r| r.room.as_str()).collect::<Vec<_>>(), ["x"]);
}

#[tokio::test(start_paused = true)]
async fn a_second_member_on_the_same_node_is_written() {
    let backend = Arc::new(FaultyBackend::default());
    let node = Node::start("a", &backend, TIMING);
    node.join(1);
    node.join(2);
    until("registered", SOON, || node.shown() == Some(2)).await;
    let first = node.join_room(1, "x");
    until("acked", SOON, || first.lock().expect("lock").is_some()).await;
    let second = node.join_room(2, "x");
    until("acked", SOON, || second.lock().expect("lock").is_some()).await;
    assert_eq!(*second.lock().expect("lock"), Some(RoomReply::Counts(room("x"), conns(2))));
    until("the backend holds 2", SOON, || {
        backend.inner.room_counts(&[room("x")]).now_or_never().and_then(Result::ok) == Some(vec![conns(2)])
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_join_left_before_the_room_count_is_known_is_still_acked() {
    let backend = Arc::new(FaultyBackend::default());
    let node = Node::start("a", &backend, TIMING);
    node.join(1);
    until("registered", SOON, || node.shown() == Some(1)).await;
    // Both in one flush interval: the room's first count is not known yet when the leave comes.
    let joined = node.join_room(1, "fresh");
    let left = node.leave_room(1, "fresh");
    until("both acked", SOON, || {
        joined.lock().expect("lock").is_some() && left.lock().expect("lock").is_some()
    })
    .await;
    assert_eq!(*joined.lock().expect("lock"), Some(RoomReply::Counts(room("fresh"), conns(0))));
    assert_eq!(*left.lock().expect("lock"), Some(RoomReply::Counts(room("fresh"), conns(0))));
    assert_eq!(node.room_greeting_of(1, "fresh"), None, "no longer a member: no greeting");
}

#[tokio::test(start_paused = true)]
async fn a_join_asking_for_members_is_acked_once_its_own_write_is_answered() {
    let backend = Arc::new(FaultyBackend::default());
    let node = Node::start("a", &backend, TIMING);
    node.join(1);
    node.join(2);
    until("registered", SOON, || node.shown() == Some(2)).await;
    let counted = node.join_room(1, "board");
    until("a plain join is acked", SOON, || counted.lock().expect("lock").is_some()).await;
    // The room's count is known now, so a plain join would be acked at once; one asking for the
    // member list waits until the backend has answered the write that holds it.
    let release = backend.hold_replies("a");
    let before = backend.writes();
    let listed = node.join_room_with(2, "board", true);
    until("the join is being written", SOON, || backend.writes() > before).await;
    tokio::time::sleep(TIMING.flush_interval * 4).await;
    assert!(listed.lock().expect("lock").is_none(), "acked before its write was answered");
    release.send(true).expect("release");
    until("acked after the write", SOON, || listed.lock().expect("lock").is_some()).await;
    assert_eq!(*listed.lock().expect("lock"), Some(RoomReply::Counts(room("board"), conns(2))));
    assert_eq!(node.room_greeting_of(2, "board"), Some(conns(2)));
    // Joining a room one is already in changes nothing to write: acked at once.
    let again = node.join_room_with(2, "board", true);
    until("a repeated join is acked", SOON, || again.lock().expect("lock").is_some()).await;
    node.stop().await;
}
