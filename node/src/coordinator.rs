//! The one task per node that owns the [`Tally`]: it takes joins and leaves, writes this node's
//! share to the backend in batches, accepts announcements, and paces `refresh users` emits.
//!
//! Being a single task is what keeps per-client order: the greeting of a newcomer and every
//! broadcast leave from here, one after the other, so no client sees an older count after a
//! newer one.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::presence::{BackendError, BackendEvent, PresenceBackend, ShareWrite};
use crate::tally::Tally;

/// Sends the count to one newcomer; called once, from the coordinator task.
pub type Greeting = Box<dyn FnOnce(i64) + Send>;

/// A change in this node's set of sockets.
pub enum Command {
    /// Socket `id` connected; greet it with the current count.
    Join {
        /// Node-local id of the socket.
        id: u64,
        /// Sends the count to that socket.
        greet: Greeting,
    },
    /// Socket `id` left (sent at most once per socket in practice; duplicates are ignored).
    Leave {
        /// Node-local id of the socket.
        id: u64,
    },
}

/// Delivers `refresh users` to every client of this node.
#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Emits `users` to every local client.
    async fn broadcast(&self, users: i64);
}

/// What HTTP handlers may read about the coordinator's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct View {
    /// The cluster count this node shows.
    pub users: i64,
    /// Sockets on this node.
    pub local: i64,
    /// The backend could not be reached on the last try.
    pub degraded: bool,
    /// The first write to the backend has been attempted (successfully or not).
    pub started: bool,
}

/// Pacing of the coordinator, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Gather joins and leaves for this long before writing.
    pub flush_interval: Duration,
    /// Minimum time between two broadcasts.
    pub emit_interval: Duration,
    /// Upper bound on messages per second this node fans out.
    pub max_fanout_per_sec: u64,
    /// Write (and so heartbeat) at least this often.
    pub heartbeat_interval: Duration,
}

type WriteFuture = Pin<Box<dyn Future<Output = (i64, Result<ShareWrite, BackendError>)> + Send>>;

const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(1);

/// The coordinator task's state. Built by [`Coordinator::new`], consumed by [`Coordinator::run`].
pub struct Coordinator {
    node_id: String,
    backend: Arc<dyn PresenceBackend>,
    fanout: Arc<dyn Fanout>,
    metrics: Arc<Metrics>,
    timing: Timing,
    commands: mpsc::UnboundedReceiver<Command>,
    view: watch::Sender<View>,
    tally: Tally,
    sockets: HashSet<u64>,
    in_flight: Option<WriteFuture>,
    /// Announcements that arrived while a write was in flight: applied after its reply, so
    /// the share counted in the shown total is always known.
    held_back: Vec<BackendEvent>,
    last_write: Option<Instant>,
    retry_at: Instant,
    retry_delay: Duration,
    last_emitted: Option<i64>,
    last_emit_at: Instant,
}

impl Coordinator {
    /// A coordinator and the two ends other parts of the node use: the command sender and the view.
    pub fn new(
        node_id: String,
        backend: Arc<dyn PresenceBackend>,
        fanout: Arc<dyn Fanout>,
        metrics: Arc<Metrics>,
        timing: Timing,
    ) -> (Self, mpsc::UnboundedSender<Command>, watch::Receiver<View>) {
        let (tx, commands) = mpsc::unbounded_channel();
        let (view, view_rx) = watch::channel(View::default());
        let now = Instant::now();
        let coordinator = Self {
            node_id,
            backend,
            fanout,
            metrics,
            timing,
            commands,
            view,
            tally: Tally::new(),
            sockets: HashSet::new(),
            in_flight: None,
            held_back: Vec::new(),
            last_write: None,
            retry_at: now,
            retry_delay: RETRY_FIRST,
            last_emitted: None,
            last_emit_at: now,
        };
        (coordinator, tx, view_rx)
    }

    /// Runs until `stop` is cancelled, then gives this node's share back in one step.
    pub async fn run(mut self, stop: CancellationToken) {
        let (events_tx, mut events) = mpsc::channel(1024);
        self.backend.subscribe(events_tx);
        let mut flush = tokio::time::interval(self.timing.flush_interval);
        flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Checked often, so a due emit waits at most one flush interval past `emit_interval`.
        let mut emit = tokio::time::interval(self.timing.emit_interval.min(self.timing.flush_interval));
        emit.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some((share, result)) = poll_in_flight(&mut self.in_flight) => self.on_written(share, result),
                Some(command) = self.commands.recv() => self.on_command(command),
                Some(event) = events.recv() => self.on_event(event),
                _ = flush.tick() => self.maybe_write(),
                _ = emit.tick() => self.maybe_emit().await,
            }
        }
        self.give_back_share().await;
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Join { id, greet } => {
                let _span = tracing::debug_span!("connect", node = %self.node_id, socket = id).entered();
                if self.sockets.insert(id) {
                    self.tally.join();
                    self.metrics.connects.inc();
                }
                let users = self.tally.displayed();
                greet(users);
                // This client now holds a value the others may not: make sure the next tick
                // broadcasts, so whatever the count settles at reaches the newcomer too.
                if self.last_emitted != Some(users) {
                    self.last_emitted = None;
                }
            }
            Command::Leave { id } => {
                let _span = tracing::debug_span!("disconnect", node = %self.node_id, socket = id).entered();
                if self.sockets.remove(&id) {
                    self.tally.leave();
                    self.metrics.disconnects.inc();
                }
            }
        }
        self.publish_view();
    }

    fn on_event(&mut self, event: BackendEvent) {
        if self.in_flight.is_some() {
            self.held_back.push(event);
            return;
        }
        match event {
            BackendEvent::Announced(snapshot) => {
                if !self.tally.observe(snapshot) {
                    self.metrics.stale_announcements.inc();
                }
            }
            // Anything may have been missed while unsubscribed: write (and so re-read) at once.
            BackendEvent::Subscribed => self.last_write = None,
            BackendEvent::Unsubscribed => {}
        }
        self.publish_view();
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
        let was_degraded = self.view.borrow().degraded;
        match result {
            Ok(write) => {
                let first = self.last_write.is_none() && !self.view.borrow().started;
                self.last_write = Some(Instant::now());
                self.retry_delay = RETRY_FIRST;
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
                self.metrics.nodes_alive.set(i64::from(write.nodes_alive));
                if write.reaped > 0 {
                    let _span =
                        tracing::debug_span!("reap", node = %self.node_id, reaped = write.reaped).entered();
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
                self.set_degraded(false);
            }
            Err(error) => {
                // The write may or may not have landed: make the next one unconditional.
                self.tally.forget_written();
                self.retry_at = Instant::now() + self.retry_delay;
                self.retry_delay = (self.retry_delay * 2).min(RETRY_CAP);
                if !was_degraded {
                    tracing::warn!(%error, "cannot write to the backend; serving the last known total adjusted by local changes");
                }
                self.set_degraded(true);
            }
        }
        for event in std::mem::take(&mut self.held_back) {
            self.on_event(event);
        }
        self.publish_view();
    }

    fn set_degraded(&mut self, degraded: bool) {
        self.metrics.degraded.set(i64::from(degraded));
        self.view.send_modify(|v| {
            v.degraded = degraded;
            v.started = true;
        });
    }

    fn publish_view(&self) {
        let (users, local) = (self.tally.displayed(), self.tally.local());
        self.metrics.cluster_users.set(users);
        self.metrics.local_connections.set(local);
        self.view.send_if_modified(|v| {
            let changed = v.users != users || v.local != local;
            v.users = users;
            v.local = local;
            changed
        });
    }

    /// Broadcasts the latest count if it changed, no more often than the fan-out budget allows.
    async fn maybe_emit(&mut self) {
        let users = self.tally.displayed();
        if self.last_emitted == Some(users) {
            return;
        }
        let local = u64::try_from(self.tally.local()).unwrap_or(0);
        let budget = Duration::from_secs_f64(local as f64 / self.timing.max_fanout_per_sec as f64);
        if self.last_emit_at.elapsed() < self.timing.emit_interval.max(budget) {
            return;
        }
        self.fanout.broadcast(users).await;
        self.metrics.refresh_emits.inc();
        self.metrics.refresh_messages.inc_by(local);
        self.last_emitted = Some(users);
        self.last_emit_at = Instant::now();
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
