//! The count as pure logic: no sockets, no Redis, no clock. What this node holds
//! ([`local::LocalPresence`]), what it shows per scope ([`tally::Tally`]), and room names.

pub mod local;
pub mod room;
pub mod tally;

pub use local::{Identity, LocalPresence, SocketId};
pub use room::{RoomName, RoomNameError};
pub use tally::Tally;

/// What a count is of: the whole cluster, or one room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every socket on namespace `/`.
    Global,
    /// The sockets in one room.
    Room(RoomName),
}
