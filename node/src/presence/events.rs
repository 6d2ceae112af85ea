//! Webhook events: produced by the backend in the same atomic step as the change that causes them,
//! kept in a per-group log (a Redis stream, or memory), and read back by the one node that holds a
//! group's delivery lease ([`EventLog`]).

use async_trait::async_trait;

use super::BackendError;

/// The kinds of event, as named on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A room went from 0 to 1 connection (not within the vacated delay of its last vacancy).
    RoomOccupied,
    /// A room has had 0 connections for `webhook_vacated_delay_ms`.
    RoomVacated,
    /// A signed user's first connection in a room, anywhere in the cluster.
    MemberJoined,
    /// A signed user's last connection in a room left (or its node died).
    MemberLeft,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 4] =
        [EventKind::RoomOccupied, EventKind::RoomVacated, EventKind::MemberJoined, EventKind::MemberLeft];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::RoomOccupied => "room.occupied",
            EventKind::RoomVacated => "room.vacated",
            EventKind::MemberJoined => "member.joined",
            EventKind::MemberLeft => "member.left",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// How events are produced, when webhooks are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPolicy {
    /// Kinds produced (a bit per [`EventKind::ALL`] index).
    pub kinds: u8,
    /// How long a room stays empty before `room.vacated`.
    pub vacated_delay_ms: u64,
    /// Events kept per group log; beyond it the oldest are trimmed, delivered or not.
    pub log_max: u64,
}

impl EventPolicy {
    /// Whether `kind` is produced.
    pub fn wants(&self, kind: EventKind) -> bool {
        EventKind::ALL.iter().position(|k| *k == kind).is_some_and(|i| self.kinds & (1 << i) != 0)
    }

    /// The names of the kinds produced.
    pub fn names(&self) -> Vec<&'static str> {
        EventKind::ALL.into_iter().filter(|k| self.wants(*k)).map(EventKind::name).collect()
    }
}

/// One event as stored and delivered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookEvent {
    /// Unique and stable: receivers drop duplicates by it.
    pub id: String,
    /// `room.occupied`, `room.vacated`, `member.joined`, `member.left`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The room.
    pub room: String,
    /// The user, for member events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user's public info, for member events of signed users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    /// When it was produced (ms since the epoch, the backend's clock).
    pub at: u64,
    /// The room group's version at the step that produced it: events of one room are in this order.
    pub version: u64,
}

/// A dead-lettered event: delivery gave up after `webhook_max_attempts`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadEvent {
    /// The event.
    pub event: WebhookEvent,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub error: String,
    /// When it was given up (ms since the epoch).
    pub dead_at: u64,
}

/// The per-group event logs, as the delivering node uses them.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Takes or keeps group `group`'s delivery lease for `node` for `ttl_ms`; true while held.
    async fn hold_lease(&self, group: u16, node: &str, ttl_ms: u64) -> Result<bool, BackendError>;

    /// Events of `group` not yet acknowledged, oldest first: first those claimed earlier (by this
    /// node or, after a lease change, by a dead holder), then new ones; at most `max`.
    async fn read(&self, group: u16, node: &str, max: usize) -> Result<Vec<WebhookEvent>, BackendError>;

    /// The receiver took these events.
    async fn acknowledge(&self, group: u16, ids: &[String]) -> Result<(), BackendError>;

    /// Delivery gave up on these events: keep them for `/api/webhooks/dead`, and acknowledge them.
    async fn dead_letter(&self, group: u16, dead: &[DeadEvent]) -> Result<(), BackendError>;

    /// Dead-lettered events of every group, newest first, at most `limit`.
    async fn dead(&self, groups: u16, limit: usize) -> Result<Vec<DeadEvent>, BackendError>;

    /// Events of `group` produced and not yet acknowledged.
    async fn backlog(&self, group: u16) -> Result<u64, BackendError>;
}
