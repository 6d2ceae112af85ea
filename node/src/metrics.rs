//! Prometheus metrics of one node, served at `/metrics` (names are listed in the README).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Label of the Redis metrics: which operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    /// `flush`, `deregister`, `subscribe`, `room_counts`, `list_rooms`, `members`.
    pub operation: &'static str,
}

/// Label of refused connections: why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `max_connections`, `draining`; for room joins `invalid`, `max_rooms`, `rate_limited`...
    pub reason: &'static str,
}

/// Every metric a node exports. Cheap to update from any task.
#[allow(missing_docs)] // each field's help text is registered in `Metrics::new`
pub struct Metrics {
    registry: Registry,
    pub local_connections: Gauge,
    pub cluster_users: Gauge,
    pub connects: Counter,
    pub disconnects: Counter,
    pub refresh_emits: Counter,
    pub refresh_messages: Counter,
    pub emits_deferred: Counter,
    pub fanout_interval: Gauge<f64, AtomicU64>,
    pub redis_duration: Family<OperationLabel, Histogram>,
    pub redis_errors: Family<OperationLabel, Counter>,
    pub nodes_alive: Gauge,
    pub nodes_reaped: Counter,
    pub reseeds: Counter,
    pub degraded: Gauge,
    pub refused: Family<ReasonLabel, Counter>,
    pub bad_announcements: Counter,
    pub stale_announcements: Counter<u64, AtomicU64>,
    pub gone_at_greeting: Counter,
    pub orphan_sockets: Counter,
    pub cluster_connections: Gauge,
    pub cluster_unique_users: Gauge,
    pub rooms_local: Gauge,
    pub room_joins: Counter,
    pub room_leaves: Counter,
    pub room_joins_refused: Family<ReasonLabel, Counter>,
    pub room_announcements: Counter,
    pub room_emits: Counter,
    pub room_messages: Counter,
    pub auth_refused: Family<ReasonLabel, Counter>,
    pub tokens_expired: Counter,
    pub tokens_refreshed: Counter,
    pub webhook_produced: Family<KindLabel, Counter>,
    pub webhook_delivered_events: Counter,
    pub webhook_retries: Counter,
    pub webhook_dead_lettered: Counter,
    pub webhook_latency: Histogram,
    pub webhook_backlog: Gauge,
    /// From the Redis step that made a change to this node receiving its announcement.
    pub announcement_lag: Histogram,
    backlog_by_group: std::sync::Mutex<std::collections::HashMap<u16, u64>>,
}

/// Label of the webhook metrics: the event's type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `room.occupied`, `room.vacated`, `member.joined`, `member.left`.
    pub r#type: &'static str,
}

impl Metrics {
    /// Registers every metric under the `rollcall_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rollcall");
        let m = Self {
            local_connections: Gauge::default(),
            cluster_users: Gauge::default(),
            connects: Counter::default(),
            disconnects: Counter::default(),
            refresh_emits: Counter::default(),
            refresh_messages: Counter::default(),
            emits_deferred: Counter::default(),
            fanout_interval: Gauge::default(),
            redis_duration: Family::new_with_constructor(|| {
                Histogram::new([0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0])
            }),
            redis_errors: Family::default(),
            nodes_alive: Gauge::default(),
            nodes_reaped: Counter::default(),
            reseeds: Counter::default(),
            degraded: Gauge::default(),
            refused: Family::default(),
            bad_announcements: Counter::default(),
            stale_announcements: Counter::default(),
            gone_at_greeting: Counter::default(),
            orphan_sockets: Counter::default(),
            cluster_connections: Gauge::default(),
            cluster_unique_users: Gauge::default(),
            rooms_local: Gauge::default(),
            room_joins: Counter::default(),
            room_leaves: Counter::default(),
            room_joins_refused: Family::default(),
            room_announcements: Counter::default(),
            room_emits: Counter::default(),
            room_messages: Counter::default(),
            auth_refused: Family::default(),
            tokens_expired: Counter::default(),
            tokens_refreshed: Counter::default(),
            webhook_produced: Family::default(),
            webhook_delivered_events: Counter::default(),
            webhook_retries: Counter::default(),
            webhook_dead_lettered: Counter::default(),
            webhook_latency: Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            webhook_backlog: Gauge::default(),
            announcement_lag: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            backlog_by_group: std::sync::Mutex::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("local_connections", "Sockets connected to this node", m.local_connections.clone());
        r.register("cluster_users", "Cluster-wide user count this node shows", m.cluster_users.clone());
        r.register("connects", "Sockets that connected to this node", m.connects.clone());
        r.register("disconnects", "Sockets that left this node", m.disconnects.clone());
        r.register("refresh_emits", "Broadcasts of `refresh users` by this node", m.refresh_emits.clone());
        r.register(
            "refresh_messages",
            "`refresh users` messages sent to clients",
            m.refresh_messages.clone(),
        );
        r.register(
            "emits_deferred",
            "Emit checks at which a broadcast due at the emit interval was held back (fan-out budget or load)",
            m.emits_deferred.clone(),
        );
        r.register_with_unit(
            "fanout_interval",
            "Time between two `refresh users` broadcasts now (emit interval, fan-out budget, load)",
            Unit::Seconds,
            m.fanout_interval.clone(),
        );
        r.register_with_unit(
            "redis_command_duration",
            "Latency of Redis operations",
            Unit::Seconds,
            m.redis_duration.clone(),
        );
        r.register("redis_errors", "Failed Redis operations", m.redis_errors.clone());
        r.register("nodes_alive", "Live nodes in the cluster, as last read", m.nodes_alive.clone());
        r.register(
            "dead_nodes_reaped",
            "Expired nodes whose users this node removed",
            m.nodes_reaped.clone(),
        );
        r.register(
            "reseeds",
            "Times this node put its share back (Redis lost it, or it was reaped)",
            m.reseeds.clone(),
        );
        r.register("degraded", "1 while this node cannot reach Redis", m.degraded.clone());
        r.register("connections_refused", "Connections refused by limits", m.refused.clone());
        r.register(
            "bad_announcements",
            "Messages on the update channel that did not parse",
            m.bad_announcements.clone(),
        );
        r.register(
            "stale_announcements",
            "Announcements not newer than the shown total (includes the echo of this node's own writes)",
            m.stale_announcements.clone(),
        );
        r.register(
            "sockets_gone_at_greeting",
            "Sockets whose transport had closed by the time they were greeted; removed then (a later disconnect of the same socket is ignored)",
            m.gone_at_greeting.clone(),
        );
        r.register(
            "orphan_sockets",
            "Counted sockets the Socket.IO layer no longer held, removed by the periodic sweep",
            m.orphan_sockets.clone(),
        );
        r.register(
            "cluster_connections",
            "Cluster-wide sockets this node shows",
            m.cluster_connections.clone(),
        );
        r.register(
            "cluster_unique_users",
            "Cluster-wide distinct users this node shows (signed users once, anonymous sockets each)",
            m.cluster_unique_users.clone(),
        );
        r.register("rooms_local", "Rooms with members on this node", m.rooms_local.clone());
        r.register("room_joins", "Room joins on this node (at connect and by event)", m.room_joins.clone());
        r.register(
            "room_leaves",
            "Room leaves on this node (by event and at disconnect)",
            m.room_leaves.clone(),
        );
        r.register("room_joins_refused", "Room joins refused, by reason", m.room_joins_refused.clone());
        r.register(
            "room_announcements",
            "Room-group announcements received from the backend",
            m.room_announcements.clone(),
        );
        r.register("room_emits", "Broadcasts of `room users` by this node", m.room_emits.clone());
        r.register("room_messages", "`room users` messages sent to clients", m.room_messages.clone());
        r.register(
            "auth_refused",
            "Handshakes and token refreshes refused, by reason",
            m.auth_refused.clone(),
        );
        r.register("tokens_expired", "Sockets closed because their token expired", m.tokens_expired.clone());
        r.register(
            "tokens_refreshed",
            "Fresh tokens accepted from connected sockets",
            m.tokens_refreshed.clone(),
        );
        r.register(
            "webhook_events_produced",
            "Webhook events produced by this node's steps",
            m.webhook_produced.clone(),
        );
        r.register(
            "webhook_events_delivered",
            "Webhook events a receiver acknowledged (2xx)",
            m.webhook_delivered_events.clone(),
        );
        r.register(
            "webhook_deliveries_retried",
            "Webhook POSTs retried after a failure",
            m.webhook_retries.clone(),
        );
        r.register(
            "webhook_events_dead_lettered",
            "Webhook events given up after the last attempt",
            m.webhook_dead_lettered.clone(),
        );
        r.register_with_unit(
            "webhook_delivery_latency",
            "From an event's production to the receiver's 2xx",
            Unit::Seconds,
            m.webhook_latency.clone(),
        );
        r.register_with_unit(
            "announcement_lag",
            "From the Redis step that changed a count (Redis clock) to this node receiving its announcement (node clock)",
            Unit::Seconds,
            m.announcement_lag.clone(),
        );
        r.register(
            "webhook_backlog",
            "Webhook events waiting in the groups this node delivers",
            m.webhook_backlog.clone(),
        );
        Self { registry, ..m }
    }

    /// Records one Redis operation's latency, and its failure if it failed.
    pub fn observe_redis(&self, operation: &'static str, took: Duration, ok: bool) {
        let label = OperationLabel { operation };
        self.redis_duration.get_or_create(&label).observe(took.as_secs_f64());
        if !ok {
            self.redis_errors.get_or_create(&label).inc();
        }
    }

    /// Records how long an announcement made at `at_ms` (Unix ms, Redis clock) took to arrive.
    /// A Redis clock ahead of this node's reads as no lag rather than a negative one.
    pub fn announcement_arrived(&self, at_ms: u64) {
        let lag_ms = unix_millis().saturating_sub(u128::from(at_ms));
        self.announcement_lag.observe(lag_ms as f64 / 1000.0);
    }

    /// Counts events a receiver took, and their latency from production.
    pub fn webhook_delivered(&self, events: &[crate::presence::WebhookEvent]) {
        let now = unix_millis();
        for event in events {
            let lag_ms = now.saturating_sub(u128::from(event.at));
            self.webhook_latency.observe(lag_ms as f64 / 1000.0);
        }
        self.webhook_delivered_events.inc_by(events.len() as u64);
    }

    /// The backlog of one group this node delivers; the gauge shows their sum.
    pub fn set_webhook_backlog(&self, group: u16, backlog: u64) {
        if let Ok(mut groups) = self.backlog_by_group.lock() {
            groups.insert(group, backlog);
            self.webhook_backlog.set(i64::try_from(groups.values().sum::<u64>()).unwrap_or(i64::MAX));
        }
    }

    /// Counts a produced webhook event.
    pub fn webhook_produced(&self, kind: &'static str) {
        self.webhook_produced.get_or_create(&KindLabel { r#type: kind }).inc();
    }

    /// Counts a refused token.
    pub fn refuse_auth(&self, reason: &'static str) {
        self.auth_refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a refused room join.
    pub fn refuse_join(&self, reason: &'static str) {
        self.room_joins_refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a refused connection.
    pub fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Milliseconds since the Unix epoch on this node's clock (0 if the clock is before it).
fn unix_millis() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}
