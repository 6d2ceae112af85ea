//! The one task per node that owns the counts: it takes connects, disconnects, joins and leaves,
//! writes this node's shares to the backend in batches, accepts announcements, and paces the
//! `refresh users` and `room users` broadcasts.
//!
//! Being a single task is what keeps per-client order: greetings, acks and broadcasts all leave
//! from here, one after the other, so no client sees an older count after a newer one. The backend
//! and the clients come from outside, so the whole loop is tested with an in-memory backend and
//! paused time (`tests.rs`).

mod api;
mod commands;
mod emitting;
mod flushing;
mod pacing;
mod rooms;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use self::api::{Clients, Command, Greeted, Limits, ReplyTo, RoomReply, Timing};
use self::flushing::{InFlight, Taken};
pub use self::pacing::PacingPolicy;
use self::pacing::{Governor, Pacer};
use self::rooms::{Expiries, RoomView};
use crate::backoff::Backoff;
use crate::count::{LocalPresence, RoomName, Tally};
use crate::metrics::Metrics;
use crate::presence::{BackendEvent, Member, PresenceBackend, Reap};
use crate::readmodel::NodeState;

pub use crate::count::SocketId;

/// How often the counted sockets are checked against the Socket.IO layer's own list. This bounds
/// how long a socket whose transport closed unseen (see `sockets.rs`) can stay counted when its
/// greeting did not already reveal it.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How often the dashboard's busiest rooms are recomputed, and expired tokens closed.
const TOP_ROOMS_INTERVAL: Duration = Duration::from_secs(1);

/// Announcements kept while waiting for a reply; beyond this the oldest go (a reply supersedes
/// everything older than itself anyway).
const HELD_BACK_CAP: usize = 4096;

/// Settings of one coordinator.
#[derive(Debug, Clone)]
pub struct Config {
    /// Flush, heartbeat and broadcast pacing.
    pub timing: Timing,
    /// Per-socket limits and what `refresh users` counts.
    pub limits: Limits,
    /// Room groups (as the backend's `RoomPolicy`).
    pub groups: u16,
    /// With webhooks on: wakes a group's delivery when events may be waiting.
    pub hints: Option<Arc<crate::webhooks::Hints>>,
}

/// The coordinator task's state. Built by [`Coordinator::new`], consumed by [`Coordinator::run`].
pub struct Coordinator {
    node_id: Arc<str>,
    backend: Arc<dyn PresenceBackend>,
    clients: Arc<dyn Clients>,
    metrics: Arc<Metrics>,
    config: Config,
    commands: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<NodeState>,
    local: LocalPresence,
    global: Tally,
    global_pacer: Pacer<i64>,
    /// Stretches the pacing while the event loop lags or commands pile up.
    governor: Governor,
    rooms: HashMap<RoomName, RoomView>,
    /// Rooms whose shown count may differ from their last broadcast.
    changed_rooms: HashSet<RoomName>,
    /// Highest version seen per room group (the floor of the next write to it).
    group_versions: HashMap<u16, u64>,
    /// Given by the backend's first reply; 0 until then (no room is written before it).
    incarnation: u64,
    pending_reaps: Vec<Reap>,
    reaps_done: Vec<Reap>,
    in_flight: Option<InFlight>,
    /// Announcements that arrived while a write was in flight, or since a resubscription: applied
    /// after the next reply, so the share counted in each shown count is always known.
    held_back: VecDeque<BackendEvent>,
    /// Resubscribed (announcements may have been missed, one that reaped this node, say) or a
    /// write failed (it may have landed): none is applied before the authoritative reply to a
    /// write started since.
    resyncing: bool,
    /// Counts resyncs; a flush remembers the epoch it started in.
    resync_epoch: u64,
    /// Counts flushes started; a flush remembers its number, a room the last one that wrote it.
    flushes_started: u64,
    last_write: Option<Instant>,
    retry_at: Instant,
    backoff: Backoff,
    /// Member changes to deliver, in the order their steps happened.
    member_outbox: VecDeque<(RoomName, Member, bool)>,
    /// Token expiry of signed sockets.
    expiries: Expiries,
    /// With webhooks on: when each group's next `room.vacated` is due (a flush visits it then).
    vacate_due: HashMap<u16, Instant>,
    /// Heartbeats since every group was last visited for due vacancies.
    heartbeats_since_sweep: u32,
}

impl Coordinator {
    /// A coordinator and the two ends other parts of the node use: the command sender and the
    /// state the read model shows.
    pub fn new(
        node_id: Arc<str>,
        backend: Arc<dyn PresenceBackend>,
        clients: Arc<dyn Clients>,
        metrics: Arc<Metrics>,
        config: Config,
    ) -> (Self, mpsc::UnboundedSender<Command>, watch::Receiver<NodeState>) {
        let (tx, commands) = mpsc::unbounded_channel();
        let (state, state_rx) = watch::channel(NodeState::default());
        let now = Instant::now();
        let coordinator = Self {
            node_id,
            backend,
            clients,
            metrics,
            config,
            commands,
            state,
            local: LocalPresence::new(),
            global: Tally::new(),
            global_pacer: Pacer::new(now),
            governor: Governor::default(),
            rooms: HashMap::new(),
            changed_rooms: HashSet::new(),
            group_versions: HashMap::new(),
            incarnation: 0,
            pending_reaps: Vec::new(),
            reaps_done: Vec::new(),
            in_flight: None,
            held_back: VecDeque::new(),
            resyncing: false,
            resync_epoch: 0,
            flushes_started: 0,
            last_write: None,
            retry_at: now,
            backoff: Backoff::for_backend(),
            member_outbox: VecDeque::new(),
            expiries: Expiries::default(),
            vacate_due: HashMap::new(),
            heartbeats_since_sweep: 0,
        };
        (coordinator, tx, state_rx)
    }

    /// Runs until `stop` is cancelled, then gives this node's shares back in one step.
    pub async fn run(mut self, stop: CancellationToken) {
        let (events_tx, mut events) = mpsc::channel(1024);
        self.backend.subscribe(events_tx);
        let timing = self.config.timing;
        let mut flush = ticker(timing.flush_interval);
        // Checked often, so a due emit waits at most one flush interval past its time.
        let mut emit = ticker(timing.pacing.emit_interval.min(timing.flush_interval));
        let mut sweep = ticker(SWEEP_INTERVAL);
        let mut top_rooms = ticker(TOP_ROOMS_INTERVAL);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some((taken, result)) = poll_in_flight(&mut self.in_flight) => self.on_flushed(taken, result),
                Some(command) = self.commands.recv() => self.on_command(command),
                Some(event) = events.recv() => self.on_event(event),
                _ = flush.tick() => self.maybe_flush(),
                scheduled = emit.tick() => {
                    self.observe_load(scheduled);
                    self.emit_due().await;
                }
                _ = sweep.tick() => self.sweep(),
                _ = top_rooms.tick() => {
                    self.publish_top_rooms();
                    self.close_expired();
                }
            }
        }
        self.give_back().await;
    }
}

impl Coordinator {
    /// One load sample for the [`Governor`]: how late the emit tick that was due at `scheduled`
    /// runs (the event loop's lag, as this task sees it) and how many commands wait.
    fn observe_load(&mut self, scheduled: Instant) {
        let now = Instant::now();
        self.governor.observe(now, now.saturating_duration_since(scheduled), self.commands.len());
    }
}

fn ticker(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// Resolves with the in-flight flush's result, or never if there is none.
async fn poll_in_flight(
    in_flight: &mut Option<InFlight>,
) -> Option<(Taken, Result<crate::presence::FlushReply, crate::presence::BackendError>)> {
    match in_flight {
        Some(flush) => Some(flush.await),
        None => std::future::pending().await,
    }
}
