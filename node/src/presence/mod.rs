//! The cluster count, behind one trait with two drivers beside it: in memory (standalone) and
//! Redis.
//!
//! Each node owns its *shares*: how many of its sockets (and which signed users) are in the
//! whole cluster and in each room. A scope's count is the sum over live nodes. A node never sends
//! a delta: it sends absolute shares, and the backend applies the difference atomically, in the
//! same step as the announcement of the result and the events it causes. That makes every write
//! idempotent, so a retried, re-seeded (after Redis lost its data) or re-added (after being reaped
//! while alive) share is never counted twice.
//!
//! Rooms are spread over `room_groups` groups by a hash of their name ([`group_of`]); a group is
//! the unit of ordering (one version counter) and of placement (one Redis Cluster slot).

mod events;
mod memory;
mod redis;
mod types;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use events::{DeadEvent, EventKind, EventLog, EventPolicy, WebhookEvent};
pub use memory::MemoryBackend;
pub use redis::{RedisBackend, RedisOptions};
pub use types::*;

use crate::count::RoomName;

/// The backend the settings chose, seen as the count (for the coordinator and the API) and as
/// the webhook event logs (for the deliverer): one object behind both.
#[derive(Clone)]
pub struct Backend {
    /// The counts.
    pub presence: std::sync::Arc<dyn PresenceBackend>,
    /// The event logs.
    pub events: std::sync::Arc<dyn EventLog>,
}

impl Backend {
    /// Both views of `backend`.
    pub fn new<B: PresenceBackend + EventLog>(backend: B) -> Self {
        let backend = std::sync::Arc::new(backend);
        Self { presence: backend.clone(), events: backend }
    }
}

/// How a backend treats rooms, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct RoomPolicy {
    /// Room groups (hash slots of rooms); the same on every node of a cluster.
    pub groups: u16,
    /// Member changes are listed for rooms with at most this many members.
    pub max_members_listed: u32,
    /// Webhook events, when `webhook_url` is set.
    pub events: Option<EventPolicy>,
}

/// The group of a room: FNV-1a of its name, modulo `groups`. Stable across nodes and versions.
pub fn group_of(room: &RoomName, groups: u16) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in room.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    u16::try_from(hash % u64::from(groups.max(1))).unwrap_or(0)
}

/// The count's storage and announcement channel. Chosen once at startup from the config.
#[async_trait]
pub trait PresenceBackend: Send + Sync + 'static {
    /// Applies one flush — heartbeat, reaping of expired nodes, every changed share, due
    /// `room.vacated` events — and announces the results, atomically per slot. The reply is
    /// authoritative and lists the live nodes (so nothing else reads them).
    async fn flush(&self, flush: &Flush) -> Result<FlushReply, BackendError>;

    /// Removes `node` (this incarnation) and every share it holds, in the global count and in
    /// the rooms of `groups`, announcing the drop (graceful shutdown).
    async fn deregister(&self, node: &str, incarnation: u64, groups: &[u16]) -> Result<(), BackendError>;

    /// Starts delivering [`BackendEvent`]s into `events` until the receiver is dropped.
    fn subscribe(&self, events: mpsc::Sender<BackendEvent>);

    /// The counts of `rooms`, in order (zeros for empty rooms).
    async fn room_counts(&self, rooms: &[RoomName]) -> Result<Vec<Counts>, BackendError>;

    /// Non-empty rooms whose names start with `prefix`, in name order, after `cursor`.
    async fn list_rooms(
        &self,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RoomCount>, BackendError>;

    /// The signed members of `room`, in user-id order, after `cursor`.
    async fn members(
        &self,
        room: &RoomName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<MemberCount>, BackendError>;

    /// `user`'s sockets over the whole cluster, as written (for `max_connections_per_user`).
    async fn user_connections(&self, user: &str) -> Result<i64, BackendError>;

    /// `"standalone"` or `"redis"`, as shown in `/api/presence`.
    fn mode(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_stable_and_spread() {
        let room = |name: &str| RoomName::new(name).expect("valid");
        assert_eq!(group_of(&room("/"), 16), group_of(&room("/"), 16));
        assert_eq!(group_of(&room("anything"), 1), 0);
        let mut used = std::collections::HashSet::new();
        for i in 0..200 {
            used.insert(group_of(&room(&format!("/page/{i}")), 16));
        }
        assert_eq!(used.len(), 16, "200 rooms reach every one of 16 groups");
    }
}
