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
    /// A `leave` to answer.
    Leave(ReplyTo),
}

impl Waiter {
    /// The socket this waiter greets, if any.
    pub fn socket(&self) -> Option<SocketId> {
        match self {
            Waiter::Greet(id) | Waiter::Join(id, _) => Some(*id),
            Waiter::Leave(_) => None,
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
}

impl RoomView {
    /// A room this node has no count of yet.
    pub fn new(now: Instant) -> Self {
        Self { tally: Tally::new(), pacer: Pacer::new(now), waiting: Vec::new() }
    }
}
