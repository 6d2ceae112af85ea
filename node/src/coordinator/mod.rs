//! The one task per node that owns the [`Tally`]: it takes joins and leaves, writes this node's
//! share to the backend in batches, accepts announcements, and paces `refresh users` emits.
//!
//! Being a single task is what keeps per-client order: the greeting of a newcomer and every
//! broadcast leave from here, one after the other, so no client sees an older count after a
//! newer one. The backend and the fan-out come from outside, so the whole loop is tested with
//! an in-memory backend and paused time (`tests.rs`).

mod pacing;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::pacing::Pacer;
pub use self::pacing::PacingPolicy;
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::presence::{BackendError, BackendEvent, PresenceBackend, ShareWrite};
use crate::readmodel::NodeState;
use crate::tally::Tally;

/// Identifies one socket of this node (from its Engine.IO session id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketId(pub u128);

/// Whether a greeting reached its socket's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeted {
    /// Handed to the transport (or dropped because the client is slow: it is still there).
    Delivered,
    /// The transport is already closed: the socket is gone, whatever it said when it connected.
    Gone,
}

/// Sends the count to one newcomer; called at most once, from the coordinator task.
pub type Greeting = Box<dyn FnOnce(i64) -> Greeted + Send>;

/// A change in this node's set of sockets.
pub enum Command {
    /// Socket `id` connected; greet it with the current count (if one is known yet).
    Join {
        /// The socket.
        id: SocketId,
        /// Sends the count to that socket.
        greet: Greeting,
    },
    /// Socket `id` left. Several paths may report one leave; only the first counts.
    Leave {
        /// The socket.
        id: SocketId,
    },
}

/// This node's clients, as the coordinator needs them: a broadcast, and who is really there.
#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Emits `users` to every local client.
    async fn broadcast(&self, users: i64);

    /// The sockets the Socket.IO layer holds right now (`None` if it cannot tell). A socket
    /// counted here but missing there closed without its disconnect reaching the coordinator.
    fn live(&self) -> Option<HashSet<SocketId>>;
}

/// How often the counted sockets are checked against the Socket.IO layer's own list. This bounds
/// how long a socket whose transport closed unseen (see `sockets.rs`) can stay counted when its
/// greeting did not already reveal it.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Pacing of the coordinator, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Gather joins and leaves for this long before writing.
    pub flush_interval: Duration,
    /// Broadcast pacing.
    pub pacing: PacingPolicy,
    /// Write (and so heartbeat) at least this often.
    pub heartbeat_interval: Duration,
}

/// Announcements kept while waiting for a reply; beyond this the oldest go (a reply supersedes
/// everything older than itself anyway).
const HELD_BACK_CAP: usize = 4096;

type WriteFuture = Pin<Box<dyn Future<Output = (i64, Result<ShareWrite, BackendError>)> + Send>>;

/// The coordinator task's state. Built by [`Coordinator::new`], consumed by [`Coordinator::run`].
pub struct Coordinator {
    node_id: String,
    backend: Arc<dyn PresenceBackend>,
    fanout: Arc<dyn Fanout>,
    metrics: Arc<Metrics>,
    timing: Timing,
    commands: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<NodeState>,
    tally: Tally,
    sockets: HashSet<SocketId>,
    in_flight: Option<WriteFuture>,
    /// Announcements that arrived while a write was in flight, or since a resubscription: applied
    /// after the next reply, so the share counted in the shown total is always known.
    held_back: VecDeque<BackendEvent>,
    /// Resubscribed: announcements may have been missed (one that reaped this node, say), so
    /// none is applied before the next write's authoritative reply.
    resyncing: bool,
    last_write: Option<Instant>,
    retry_at: Instant,
    backoff: Backoff,
    pacer: Pacer,
}

impl Coordinator {
    /// A coordinator and the two ends other parts of the node use: the command sender and the
    /// state the read model shows.
    pub fn new(
        node_id: String,
        backend: Arc<dyn PresenceBackend>,
        fanout: Arc<dyn Fanout>,
        metrics: Arc<Metrics>,
        timing: Timing,
    ) -> (Self, mpsc::UnboundedSender<Command>, watch::Receiver<NodeState>) {
        let (tx, commands) = mpsc::unbounded_channel();
        let (state, state_rx) = watch::channel(NodeState::default());
        let now = Instant::now();
        let coordinator = Self {
            node_id,
            backend,
            fanout,
            metrics,
            timing,
            commands,
            state,
            tally: Tally::new(),
            sockets: HashSet::new(),
            in_flight: None,
            held_back: VecDeque::new(),
            resyncing: false,
            last_write: None,
            retry_at: now,
            backoff: Backoff::for_backend(),
            pacer: Pacer::new(now),
        };
        (coordinator, tx, state_rx)
    }

    /// Runs until `stop` is cancelled, then gives this node's share back in one step.
    pub async fn run(mut self, stop: CancellationToken) {
        let (events_tx, mut events) = mpsc::channel(1024);
        self.backend.subscribe(events_tx);
        let mut flush = tokio::time::interval(self.timing.flush_interval);
        flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Checked often, so a due emit waits at most one flush interval past its time.
        let check_every = self.timing.pacing.emit_interval.min(self.timing.flush_interval);
        let mut emit = tokio::time::interval(check_every);
        emit.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some((share, result)) = poll_in_flight(&mut self.in_flight) => self.on_written(share, result),
                Some(command) = self.commands.recv() => self.on_command(command),
                Some(event) = events.recv() => self.on_event(event),
                _ = flush.tick() => self.maybe_write(),
                _ = emit.tick() => self.maybe_emit().await,
                _ = sweep.tick() => self.sweep(),
            }
        }
        self.give_back_share().await;
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Join { id, greet } => {
                let _span = tracing::debug_span!("connect", node = %self.node_id, socket = id.0).entered();
                if self.sockets.insert(id) {
                    self.tally.join();
                    self.metrics.connects.inc();
                }
                // Before the first authoritative total there is no number to greet with; the
                // first broadcast after it reaches this socket too.
                if let Some(users) = self.tally.displayed() {
                    match greet(users) {
                        Greeted::Delivered => self.pacer.greeted(users),
                        Greeted::Gone => {
                            if self.remove(id) {
                                self.metrics.gone_at_greeting.inc();
                            }
                        }
                    }
                }
            }
            Command::Leave { id } => {
                let _span = tracing::debug_span!("disconnect", node = %self.node_id, socket = id.0).entered();
                self.remove(id);
            }
        }
        self.publish_state();
    }

    fn remove(&mut self, id: SocketId) -> bool {
        let removed = self.sockets.remove(&id);
        if removed {
            self.tally.leave();
            self.metrics.disconnects.inc();
        }
        removed
    }

    /// Drops every counted socket the Socket.IO layer no longer holds: closed without a
    /// disconnect reaching the coordinator, and not caught by its greeting.
    fn sweep(&mut self) {
        let Some(live) = self.fanout.live() else { return };
        let orphans: Vec<SocketId> = self.sockets.iter().filter(|id| !live.contains(id)).copied().collect();
        if orphans.is_empty() {
            return;
        }
        for id in orphans {
            if self.remove(id) {
                self.metrics.orphan_sockets.inc();
            }
        }
        tracing::info!(
            count = self.metrics.orphan_sockets.get(),
            "removed sockets the Socket.IO layer no longer holds"
        );
        self.publish_state();
    }

    fn on_event(&mut self, event: BackendEvent) {
        if let BackendEvent::Subscribed = event {
            // Anything may have been missed while unsubscribed: write (and so re-read) at once,
            // and apply nothing until that authoritative reply.
            self.last_write = None;
            self.resyncing = true;
            return;
        }
        if self.in_flight.is_some() || self.resyncing {
            if self.held_back.len() == HELD_BACK_CAP {
                self.held_back.pop_front();
            }
            self.held_back.push_back(event);
            return;
        }
        if let BackendEvent::Announced(announcement) = event {
            let accepted = if announcement.reaped.contains(&self.node_id) {
                self.tally.observe_reaped(announcement.snapshot)
            } else {
                self.tally.observe(announcement.snapshot)
            };
            if !accepted {
                self.metrics.stale_announcements.inc();
            }
            self.publish_state();
        }
    }

    fn maybe_write(&mut self) {
        let now = Instant::now();
        let heartbeat_due =
            self.last_write.is_none_or(|at| now.duration_since(at) >= self.timing.heartbeat_interval);
        if self.in_flight.is_some() || now < self.retry_at || !(heartbeat_due || self.tally.needs_write()) {
            return;
        }
        let (backend, node) = (self.backend.clone(), self.node_id.clone());
        let (share, floor) = (self.tally.local(), self.tally.version());
        let span = tracing::debug_span!("flush", node = %node, share, floor);
        self.in_flight = Some(Box::pin(
            async move {
                let result = backend.write_share(&node, share, floor).await;
                (share, result)
            }
            .instrument(span),
        ));
    }

    fn on_written(&mut self, share: i64, result: Result<ShareWrite, BackendError>) {
        self.in_flight = None;
        match result {
            Ok(write) => {
                self.on_write_succeeded(share, write);
                self.resyncing = false;
            }
            Err(error) => self.on_write_failed(&error),
        }
        if !self.resyncing {
            for event in std::mem::take(&mut self.held_back) {
                self.on_event(event);
            }
        }
        self.publish_state();
    }

    fn on_write_succeeded(&mut self, share: i64, write: ShareWrite) {
        let (was_degraded, first) = {
            let state = self.state.borrow();
            (state.degraded, !state.started)
        };
        self.last_write = Some(Instant::now());
        self.backoff.reset();
        if self.tally.written(share, write.snapshot) {
            tracing::warn!(
                total = write.snapshot.total,
                version = write.snapshot.version,
                "the shown total was newer than the backend's own; took the backend's (forged announcement or failover)"
            );
        }
        if write.restored && !first {
            self.metrics.reseeds.inc();
            tracing::warn!(node = %self.node_id, share, "this node's share was missing in the backend (data loss or reaped while alive); put it back");
        }
        self.metrics.nodes_alive.set(i64::try_from(write.nodes.len()).unwrap_or(i64::MAX));
        if write.reaped > 0 {
            let _span = tracing::debug_span!("reap", node = %self.node_id, reaped = write.reaped).entered();
            self.metrics.nodes_reaped.inc_by(u64::from(write.reaped));
            tracing::info!(
                reaped = write.reaped,
                total = write.snapshot.total,
                "removed the users of expired nodes"
            );
        }
        if was_degraded {
            tracing::info!(total = write.snapshot.total, "backend reachable again; count reconciled");
        }
        self.metrics.degraded.set(0);
        let nodes = Some(write.nodes.into());
        self.state.send_modify(|s| {
            s.degraded = false;
            s.started = true;
            s.nodes = nodes;
        });
    }

    fn on_write_failed(&mut self, error: &BackendError) {
        // The write may or may not have landed: make the next one unconditional.
        self.tally.forget_written();
        self.retry_at = Instant::now() + self.backoff.next_delay();
        if !self.state.borrow().degraded {
            tracing::warn!(%error, "cannot write to the backend; serving the last known total adjusted by local changes");
        }
        self.metrics.degraded.set(1);
        self.state.send_modify(|s| {
            s.degraded = true;
            s.started = true;
        });
    }

    fn publish_state(&self) {
        let (users, local) = (self.tally.displayed(), self.tally.local());
        if let Some(users) = users {
            self.metrics.cluster_users.set(users);
        }
        self.metrics.local_connections.set(local);
        self.state.send_if_modified(|s| {
            let changed = s.users != users || s.local != local;
            s.users = users;
            s.local = local;
            changed
        });
    }

    /// Broadcasts the latest count if it changed, no more often than the pacing allows.
    async fn maybe_emit(&mut self) {
        let Some(users) = self.tally.displayed() else { return };
        let recipients = u64::try_from(self.tally.local()).unwrap_or(0);
        let now = Instant::now();
        if !self.pacer.due(users, recipients, &self.timing.pacing, now) {
            return;
        }
        self.fanout.broadcast(users).await;
        self.metrics.refresh_emits.inc();
        self.metrics.refresh_messages.inc_by(recipients);
        self.pacer.emitted(users, Instant::now());
    }

    async fn give_back_share(&mut self) {
        if let Some(write) = self.in_flight.take() {
            let _ = write.await;
        }
        match self.backend.deregister(&self.node_id, self.tally.version()).await {
            Ok(snapshot) => tracing::info!(total = snapshot.total, "gave this node's share back"),
            Err(error) => {
                tracing::warn!(%error, "could not give this node's share back; survivors will reap it after node_ttl_ms")
            }
        }
    }
}

/// Resolves with the in-flight write's result, or never if there is none.
async fn poll_in_flight(
    in_flight: &mut Option<WriteFuture>,
) -> Option<(i64, Result<ShareWrite, BackendError>)> {
    match in_flight {
        Some(write) => Some(write.await),
        None => std::future::pending().await,
    }
}
