//! What the rest of the node hands the coordinator (commands) and what the coordinator needs from
//! the Socket.IO layer (`Clients`). Nothing here knows socketioxide.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;

use super::pacing::PacingPolicy;
use crate::count::{Identity, RoomName, SocketId};
use crate::presence::{Counts, Member};

/// Whether a message reached its socket's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeted {
    /// Handed to the transport (or dropped because the client is slow: it is still there).
    Delivered,
    /// The transport is already closed: the socket is gone, whatever it said when it connected.
    Gone,
}

/// The answer to a `join` or `leave`: the room's counts with this socket's change included, or
/// why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomReply {
    /// Done (or nothing to do: already in / not in the room).
    Counts(RoomName, Counts),
    /// Refused; the text is what the client reads.
    Refused(String),
    /// A `leave` of a room this socket was not in and this node does not follow: the caller
    /// reads the counts from the backend.
    NotFollowed(RoomName),
}

/// Delivers a [`RoomReply`]; called at most once, from the coordinator task.
pub type ReplyTo = Box<dyn FnOnce(RoomReply) + Send>;

/// A change in this node's set of sockets.
pub enum Command {
    /// Socket `id` connected (in `rooms`, validated, from its handshake).
    Connect {
        /// The socket.
        id: SocketId,
        /// Its signed identity, if any.
        identity: Option<Identity>,
        /// When its token expires (Unix seconds), if signed.
        expires: Option<u64>,
        /// Rooms to join at once.
        rooms: Vec<RoomName>,
    },
    /// Socket `id` presented a fresh token: it now expires at `expires`.
    Refresh {
        /// The socket.
        id: SocketId,
        /// Unix seconds.
        expires: u64,
    },
    /// How many sockets of `user` this node holds that the backend does not count yet.
    Unwritten {
        /// The user id.
        user: std::sync::Arc<str>,
        /// Where the answer goes.
        reply: tokio::sync::oneshot::Sender<i64>,
    },
    /// Socket `id` left. Several paths may report one leave; only the first counts.
    Disconnect {
        /// The socket.
        id: SocketId,
    },
    /// Socket `id` joins `room`.
    Join {
        /// The socket.
        id: SocketId,
        /// The room.
        room: RoomName,
        /// Also deliver `member joined` / `member left` of this room to the socket.
        members: bool,
        /// Where the answer goes.
        reply: ReplyTo,
    },
    /// Socket `id` leaves `room`.
    Leave {
        /// The socket.
        id: SocketId,
        /// The room.
        room: RoomName,
        /// Where the answer goes.
        reply: ReplyTo,
    },
}

/// This node's clients, as the coordinator needs them. Implemented over socketioxide in
/// `sockets.rs`, and by a recording fake in the coordinator's tests.
#[async_trait]
pub trait Clients: Send + Sync + 'static {
    /// `refresh users` with `value` to every local client.
    async fn broadcast(&self, value: i64);

    /// `refresh users` with `value` to one socket.
    fn greet(&self, socket: SocketId, value: i64) -> Greeted;

    /// `room users` with `counts` to every local member of `room`.
    async fn broadcast_room(&self, room: &RoomName, counts: Counts);

    /// `room users` with `counts` to one socket.
    fn greet_room(&self, socket: SocketId, room: &RoomName, counts: Counts) -> Greeted;

    /// From now on `socket` receives `room`'s broadcasts (and its member changes if `members`).
    fn enter(&self, socket: SocketId, room: &RoomName, members: bool);

    /// `socket` no longer receives anything of `room`.
    fn exit(&self, socket: SocketId, room: &RoomName);

    /// `member joined` (or `member left`) of `member` to the local sockets following `room`'s members.
    async fn member_change(&self, room: &RoomName, member: &Member, joined: bool);

    /// Closes `socket` (its token expired).
    fn disconnect(&self, socket: SocketId);

    /// The sockets the Socket.IO layer holds right now (`None` if it cannot tell). A socket
    /// counted here but missing there closed without its disconnect reaching the coordinator.
    fn live(&self) -> Option<HashSet<SocketId>>;
}

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

/// Limits on what one socket may do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Rooms one socket may hold at once.
    pub max_rooms_per_client: usize,
    /// What `refresh users` counts: sockets (false) or distinct users (true).
    pub global_counts_users: bool,
    /// Seconds a token may be used past its `exp` (clock skew).
    pub token_leeway_secs: u64,
}
