//! What the coordinator keeps per room followed by this node: the shown count, broadcast pacing,
//! and the sockets waiting for the room's first authoritative count.

use tokio::time::Instant;

use super::api::ReplyTo;
use super::pacing::Pacer;
use crate::count::{SocketId, Tally};
use crate::presence::Counts;

/// Someone waiting for a room's count to be known.
pub enum Waiter {
    /// A socket that joined at connect: greet it with `room users`.
    Greet(SocketId),
    /// A socket that joined by event: answer its ack, and greet it.
    Join(SocketId, ReplyTo),
    /// Like `Join`, but answered only once a flush numbered above this one wrote the room: the
    /// ack then reads the member list, which must already hold the joining socket's user.
    JoinWritten(SocketId, ReplyTo, u64),
    /// A `leave` to answer.
    Leave(ReplyTo),
}

impl Waiter {
    /// The socket this waiter greets, if any.
    pub fn socket(&self) -> Option<SocketId> {
        match self {
            Waiter::Greet(id) | Waiter::Join(id, _) | Waiter::JoinWritten(id, _, _) => Some(*id),
            Waiter::Leave(_) => None,
        }
    }
}

impl Waiter {
    /// What remains of this waiter once socket `id` left the room: a `join` still gets its ack
    /// (the count without it), a greeting is no longer wanted.
    pub fn after_leaving(self, id: SocketId) -> Option<Waiter> {
        match self {
            Waiter::Greet(socket) if socket == id => None,
            Waiter::Join(socket, reply) | Waiter::JoinWritten(socket, reply, _) if socket == id => {
                Some(Waiter::Leave(reply))
            }
            other => Some(other),
        }
    }
}

/// One followed room.
pub struct RoomView {
    /// Its count as this node shows it.
    pub tally: Tally,
    /// Its `room users` broadcasts.
    pub pacer: Pacer<Counts>,
    /// Answered once the count is known.
    pub waiting: Vec<Waiter>,
    /// The number of the last flush that wrote this node's share of the room.
    pub written_seq: u64,
}

impl RoomView {
    /// A room this node has no count of yet.
    pub fn new(now: Instant) -> Self {
        Self { tally: Tally::new(), pacer: Pacer::new(now), waiting: Vec::new(), written_seq: 0 }
    }
}

/// When each signed socket's token expires, soonest first.
#[derive(Debug, Default)]
pub struct Expiries {
    by_time: std::collections::BTreeSet<(u64, SocketId)>,
    of_socket: std::collections::HashMap<SocketId, u64>,
}

impl Expiries {
    /// Socket `id` expires at `at` (Unix seconds), replacing what was known.
    pub fn set(&mut self, id: SocketId, at: u64) {
        if let Some(old) = self.of_socket.insert(id, at) {
            self.by_time.remove(&(old, id));
        }
        self.by_time.insert((at, id));
    }

    /// Socket `id` is gone.
    pub fn remove(&mut self, id: SocketId) {
        if let Some(old) = self.of_socket.remove(&id) {
            self.by_time.remove(&(old, id));
        }
    }

    /// The sockets that expired before `cutoff`, forgotten.
    pub fn take_due(&mut self, cutoff: u64) -> Vec<SocketId> {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.by_time.first() {
            if at >= cutoff {
                break;
            }
            self.by_time.pop_first();
            self.of_socket.remove(&id);
            due.push(id);
        }
        due
    }
}
