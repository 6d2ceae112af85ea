//! What flows between the coordinator and a backend: this node's absolute shares going in,
//! authoritative snapshots, member changes and announcements coming out.

use std::sync::Arc;
use std::time::Duration;

use crate::count::RoomName;

/// A count of one scope (the whole cluster, or one room).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Sockets.
    pub connections: i64,
    /// Distinct signed users plus anonymous sockets (each its own user).
    pub users: i64,
}

impl Counts {
    /// `self + other - minus`, field by field.
    pub fn adjusted(self, plus: Counts, minus: Counts) -> Counts {
        Counts {
            connections: self.connections + plus.connections - minus.connections,
            users: self.users + plus.users - minus.users,
        }
    }

    /// The larger of each field.
    pub fn at_least(self, floor: Counts) -> Counts {
        Counts { connections: self.connections.max(floor.connections), users: self.users.max(floor.users) }
    }
}

/// The highest version a node accepts from an announcement. Redis's Lua counts in doubles, exact
/// only below 2^53, so a version forged beyond that would become a write floor the scripts cannot
/// step past (versions would stop growing). 2^52 leaves room: at a million changes a second a
/// scope takes over a century to reach it.
pub const MAX_VERSION: u64 = 1 << 52;

/// One authoritative count and its place in the order of changes of its scope. Versions only
/// grow, so a node drops anything not newer than what it has shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The count.
    pub counts: Counts,
    /// Position in the order of changes (per scope family: the global count, or a room group).
    pub version: u64,
}

/// One signed user's sockets on this node in one scope (absolute; 0 = gone from this node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCell {
    /// The user id (`sub`).
    pub user: Arc<str>,
    /// This node's sockets of that user in the scope.
    pub connections: u32,
    /// The user's public info (a JSON object, as text), shown to other members.
    pub info: Option<Arc<str>>,
}

/// This node's absolute contribution to one scope. `users` lists only the cells that changed
/// since the last acknowledged write (each absolute), so a write is idempotent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Share {
    /// Sockets of this node in the scope.
    pub connections: u32,
    /// Of those, anonymous ones (each its own user).
    pub anonymous: u32,
    /// Changed signed-user cells.
    pub users: Vec<UserCell>,
}

/// A room's share in a flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomShare {
    /// The room.
    pub room: RoomName,
    /// This node's contribution to it.
    pub share: Share,
}

/// A dead node (or a dead incarnation of a live one) whose room data still has to be removed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Reap {
    /// Its node id.
    pub node: String,
    /// Its incarnation: only data written by exactly that incarnation is removed.
    pub incarnation: u64,
    /// The room groups it held data in.
    pub groups: Vec<u16>,
}

/// One flush: this node's heartbeat and every share that changed, applied in one atomic step
/// per slot (one step in all on a single Redis).
#[derive(Debug, Clone, Default)]
pub struct Flush {
    /// This node's id.
    pub node: Arc<str>,
    /// The incarnation the backend gave this node (0 before the first reply).
    pub incarnation: u64,
    /// The node's global share: always sent, since every flush is also a heartbeat.
    pub global: Share,
    /// The highest global version this node has seen: a backend that lost its data resumes above.
    pub global_floor: u64,
    /// Room groups where this node holds rooms after this flush (for reaping it later).
    pub groups_held: Vec<u16>,
    /// Rooms whose share changed.
    pub rooms: Vec<RoomShare>,
    /// The highest version seen per room group, for the groups this flush touches.
    pub group_floors: Vec<(u16, u64)>,
    /// Groups to visit even without room changes: due `room.vacated` events are produced there.
    pub tick_groups: Vec<u16>,
    /// Room data of dead incarnations this node removes in this flush.
    pub reaps: Vec<Reap>,
    /// Reaps this node completed in an earlier flush: the backend forgets them.
    pub reaps_done: Vec<Reap>,
}

/// A user whose first socket arrived in, or last socket left, a room.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    /// The user id.
    pub user: Arc<str>,
    /// Their public info (JSON object text), if any.
    pub info: Option<Arc<str>>,
}

/// A room's new authoritative count, and the member changes of the step that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomUpdate {
    /// The room.
    pub room: RoomName,
    /// Its count and version after the step.
    pub snapshot: Snapshot,
    /// Users whose first socket arrived (empty when the room has more members than listed).
    pub joined: Vec<Member>,
    /// Users whose last socket left.
    pub left: Vec<Member>,
    /// The room has more members than `max_members_listed`: member changes are not listed.
    pub truncated: bool,
}

/// A live node as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeInfo {
    /// The node's id.
    pub id: String,
    /// Its sockets.
    pub users: i64,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: u64,
}

/// The backend's authoritative answer to a flush.
#[derive(Debug, Clone, Default)]
pub struct FlushReply {
    /// The global count after the step.
    pub global: Snapshot,
    /// This node's incarnation; new when `restored`.
    pub incarnation: u64,
    /// The node was not registered (first flush, reaped while alive, data loss): it is now,
    /// under a new incarnation, and must write every room share again.
    pub restored: bool,
    /// Nodes this step found dead and removed from the global count.
    pub reaped: Vec<String>,
    /// Live nodes after the step.
    pub nodes: Vec<NodeInfo>,
    /// Room data of dead incarnations still to remove (any node may do it; it is idempotent).
    pub pending_reaps: Vec<Reap>,
    /// Every room the step changed or was asked about, with its authoritative count.
    pub rooms: Vec<RoomUpdate>,
    /// The version of each room group the step touched.
    pub group_versions: Vec<(u16, u64)>,
    /// Webhook events the step produced, per group.
    pub produced: Vec<(u16, crate::presence::EventKind)>,
    /// Groups with a `room.vacated` waiting, and in how many ms the first is due.
    pub vacate_due: Vec<(u16, u64)>,
}

/// Published by a step, received by every subscribed node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// The global count changed.
    Global {
        /// The new count.
        snapshot: Snapshot,
        /// Nodes whose shares the step removed: a node finding itself here was reaped while
        /// alive, and this count holds none of its share.
        reaped: Vec<String>,
    },
    /// Rooms of one group changed.
    Rooms {
        /// The group.
        group: u16,
        /// The group's version after the step.
        version: u64,
        /// The rooms that changed.
        rooms: Vec<RoomUpdate>,
        /// Node incarnations whose room data the step removed.
        reaped: Vec<String>,
    },
}

/// Pushed by a backend to the node that subscribed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// A step announced changes.
    Announced(Announcement),
    /// The update stream was (re)established: anything may have been missed, so re-read.
    Subscribed,
    /// The update stream broke; the backend is reconnecting.
    Unsubscribed,
}

/// Why a backend call failed. Callers never turn this into a number.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// No connection could be had from the pool.
    #[error("redis pool: {0}")]
    Pool(String),
    /// Redis did not answer within the command deadline.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered something this version of rollcall does not understand.
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
    /// A Redis value did not have the expected type.
    #[error("unexpected reply from redis: {0}")]
    Parse(#[from] ::redis::ParsingError),
}

/// A room with its count, as the HTTP API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomCount {
    /// The room.
    pub room: RoomName,
    /// Its count (zeros for an empty room).
    pub counts: Counts,
}

/// One page of a listing, and where the next starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor of the next page; `None` on the last.
    pub next: Option<String>,
}

/// A member of a room, as the HTTP API lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberCount {
    /// The user id.
    pub user: Arc<str>,
    /// Their public info (JSON object text), if any.
    pub info: Option<Arc<str>>,
    /// Their sockets in the room, over the whole cluster.
    pub connections: i64,
}
