//! rollcall's wire contract, shared by the node (which speaks it) and the load tester (which
//! checks it): Socket.IO event names and the JSON documents of the HTTP API. Outside clients
//! depend on these names; change them only with a new contract.

use serde::{Deserialize, Serialize};

/// Event sent to every client of namespace `/`: one integer, the cluster-wide count.
pub const REFRESH_EVENT: &str = "refresh users";

/// `GET /api/presence`: what one node shows and knows about the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceDocument {
    /// The count `refresh users` carries; `null` until the node has heard the cluster's total
    /// once (it shows no number before that).
    pub users: Option<i64>,
    /// Sockets in the cluster; `null` likewise.
    pub connections: Option<i64>,
    /// Distinct users in the cluster (signed users once, anonymous sockets each); `null` likewise.
    pub unique_users: Option<i64>,
    /// The id of the node that answered.
    pub node: String,
    /// Sockets connected to that node.
    pub local: i64,
    /// `"standalone"` or `"redis"`.
    pub mode: String,
    /// True while the node cannot reach its backend.
    pub degraded: bool,
    /// The live nodes as of this node's last successful write; `null` before the first one.
    pub nodes: Option<Vec<NodeDocument>>,
}

/// One live node in [`PresenceDocument::nodes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDocument {
    /// The node's id.
    pub id: String,
    /// Its share of the count.
    pub users: i64,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: u64,
}

/// Event a room's members receive: one [`RoomCount`], when they join and whenever it changes.
pub const ROOM_USERS_EVENT: &str = "room users";
/// Client event to join a room: a room name, or `{ "room", "members": bool }`; acked with [`RoomAck`].
pub const JOIN_EVENT: &str = "join";
/// Client event to leave a room: a room name; acked with [`RoomAck`].
pub const LEAVE_EVENT: &str = "leave";
/// Event to sockets following a room's members: a user's first connection in the room arrived.
pub const MEMBER_JOINED_EVENT: &str = "member joined";
/// Event to sockets following a room's members: a user's last connection in the room left.
pub const MEMBER_LEFT_EVENT: &str = "member left";

/// One room's count, as pushed in `room users` and returned by the rooms API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCount {
    /// The room's name.
    pub room: String,
    /// Distinct users in it (each anonymous connection is its own user).
    pub users: i64,
    /// Connections in it.
    pub connections: i64,
}

/// The ack of `join` and `leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RoomAck {
    /// Done: the room's counts with this change included.
    Ok {
        /// Always `true`.
        ok: bool,
        /// The room.
        room: String,
        /// Distinct users.
        users: i64,
        /// Connections.
        connections: i64,
        /// With `members: true`: the room's signed members (up to `max_members_listed`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members: Option<Vec<Member>>,
        /// With `members: true`: the room has more members than listed (only counts flow).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        truncated: Option<bool>,
    },
    /// Refused.
    Err {
        /// Always `false`.
        ok: bool,
        /// Why.
        error: String,
    },
}

impl RoomAck {
    /// A successful ack.
    pub fn counts(count: RoomCount) -> Self {
        RoomAck::Ok {
            ok: true,
            room: count.room,
            users: count.users,
            connections: count.connections,
            members: None,
            truncated: None,
        }
    }

    /// A refusal.
    pub fn refused(error: impl Into<String>) -> Self {
        RoomAck::Err { ok: false, error: error.into() }
    }
}

/// `GET /api/rooms`: one page of non-empty rooms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomsPage {
    /// The rooms, in name order.
    pub rooms: Vec<RoomCount>,
    /// Cursor of the next page; `null` on the last.
    pub next: Option<String>,
}

/// `POST /api/rooms/counts` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsQuery {
    /// Up to 1000 room names.
    pub rooms: Vec<String>,
}

/// `POST /api/rooms/counts` response: the counts in the order asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCounts {
    /// One per room asked.
    pub rooms: Vec<RoomCount>,
}

/// Client event to present a fresh token before the current one expires; acked with [`TokenAck`].
pub const TOKEN_EVENT: &str = "token";

/// One signed member of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The user id (`sub`).
    pub user: String,
    /// The public info from their token (a JSON object), or `null`.
    pub info: Option<serde_json::Value>,
    /// Their connections in the room, over the whole cluster.
    pub connections: i64,
}

/// `GET /api/rooms/{room}/members`: one page of a room's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersPage {
    /// The members, in user-id order.
    pub members: Vec<Member>,
    /// Cursor of the next page; `null` on the last.
    pub next: Option<String>,
}

/// The payload of `member joined` / `member left`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChange {
    /// The room.
    pub room: String,
    /// The user id.
    pub user: String,
    /// Their public info, or `null`.
    pub info: Option<serde_json::Value>,
}

/// The ack of `token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenAck {
    /// Accepted: the socket now expires at `exp` (Unix seconds).
    Ok {
        /// Always `true`.
        ok: bool,
        /// The new expiry.
        exp: u64,
    },
    /// Refused: the socket keeps its old expiry.
    Err {
        /// Always `false`.
        ok: bool,
        /// Why.
        error: String,
    },
}
