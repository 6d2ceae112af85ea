//! The Socket.IO side: socketioxide wiring that turns connects and disconnects into
//! [`Command`]s and delivers `refresh users`. Nothing here knows how the count is kept.
//!
//! A connect and the close of its transport can race inside socketioxide (0.18): `Namespace::
//! connect` buffers the CONNECT ack and only then marks the socket connected, so a transport
//! that closes in between is fully torn down (its close found the socket, saw no disconnect
//! handler and removed it) and is then marked connected again. Our handler sees `connected()`
//! and registers a disconnect handler that will never run. The coordinator therefore does not
//! trust `connected()` alone: a greeting whose emit finds the transport closed is that socket's
//! leave, and a periodic sweep drops counted sockets socketioxide no longer holds.

use std::collections::HashSet;

use async_trait::async_trait;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError, SocketIo};
use tokio::sync::mpsc;

use crate::coordinator::{Command, Fanout, Greeted, SocketId};

pub use rollcall_wire::REFRESH_EVENT;

/// Registers the handler of namespace `/` on `io`.
pub fn register(io: &SocketIo, commands: mpsc::UnboundedSender<Command>) {
    // The handler runs in its own task, so the socket may already be gone by then (see above).
    io.ns("/", move |socket: SocketRef| {
        let id = socket_id(socket.id);
        let greeter = socket.clone();
        let greet = Box::new(move |users: i64| match greeter.emit(REFRESH_EVENT, &users) {
            Err(SendError::Socket(SocketError::Closed)) => Greeted::Gone,
            // A full buffer means a slow client, not a gone one: it gets the next broadcast.
            _ => Greeted::Delivered,
        });
        if commands.send(Command::Join { id, greet }).is_err() {
            // The coordinator has stopped: the node is shutting down.
            let _ = socket.disconnect();
            return std::future::ready(());
        }
        let leave = commands.clone();
        socket.on_disconnect(move || {
            let _ = leave.send(Command::Leave { id });
            std::future::ready(())
        });
        // Closed between the connect and the line above: that handler will never run. (The
        // coordinator ignores a second leave of the same socket.)
        if !socket.connected() {
            let _ = commands.send(Command::Leave { id });
        }
        std::future::ready(())
    });
}

/// The coordinator's id of a socket: its 16-character Engine.IO session id, as a number.
fn socket_id(sid: Sid) -> SocketId {
    let mut bytes = [0u8; 16];
    for (slot, byte) in bytes.iter_mut().zip(sid.to_string().bytes()) {
        *slot = byte;
    }
    SocketId(u128::from_be_bytes(bytes))
}

/// [`Fanout`] over a socketioxide server: one broadcast on namespace `/`.
pub struct SocketIoFanout(pub SocketIo);

#[async_trait]
impl Fanout for SocketIoFanout {
    async fn broadcast(&self, users: i64) {
        if let Err(error) = self.0.emit(REFRESH_EVENT, &users).await {
            // A client whose buffer is full misses this value; it gets the next one, and a
            // client that stays that slow is dropped by the Engine.IO ping timeout.
            tracing::debug!(%error, "some clients missed a refresh");
        }
    }

    fn live(&self) -> Option<HashSet<SocketId>> {
        let main = self.0.of("/")?;
        Some(main.sockets().into_iter().map(|socket| socket_id(socket.id)).collect())
    }
}
