//! The Socket.IO side: socketioxide wiring that turns connects and disconnects into
//! [`Command`]s and delivers `refresh users`. Nothing here knows how the count is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use tokio::sync::mpsc;

use crate::coordinator::{Command, Fanout};

pub use rollcall_wire::REFRESH_EVENT;

/// Registers the handler of namespace `/` on `io`. `open_sockets` tracks the sockets connected
/// here, for admission control.
pub fn register(io: &SocketIo, commands: mpsc::UnboundedSender<Command>, open_sockets: Arc<AtomicUsize>) {
    let next_id = Arc::new(AtomicU64::new(0));
    // The handler runs in its own task, so the socket may already be gone by then (see below).
    io.ns("/", move |socket: SocketRef| {
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let greeter = socket.clone();
        let greet = Box::new(move |users: i64| {
            // Fails only if the socket is already gone; its Leave follows.
            let _ = greeter.emit(REFRESH_EVENT, &users);
        });
        if commands.send(Command::Join { id, greet }).is_err() {
            // The coordinator has stopped: the node is shutting down.
            let _ = socket.disconnect();
            return std::future::ready(());
        }
        open_sockets.fetch_add(1, Ordering::Relaxed);
        let leave = once_leave(id, commands.clone(), open_sockets.clone());
        let on_disconnect = leave.clone();
        socket.on_disconnect(move || {
            on_disconnect();
            std::future::ready(())
        });
        // Closed between the connect and the line above: that handler will never run.
        if !socket.connected() {
            leave();
        }
        std::future::ready(())
    });
}

/// The Leave of socket `id`, effective once however many paths report it.
fn once_leave(
    id: u64,
    commands: mpsc::UnboundedSender<Command>,
    open_sockets: Arc<AtomicUsize>,
) -> Arc<dyn Fn() + Send + Sync> {
    let left = AtomicBool::new(false);
    Arc::new(move || {
        if !left.swap(true, Ordering::Relaxed) {
            open_sockets.fetch_sub(1, Ordering::Relaxed);
            let _ = commands.send(Command::Leave { id });
        }
    })
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
}
