//! The Socket.IO side: socketioxide wiring that turns handshakes, disconnects and client events
//! (`join`, `leave`, `token`) into [`Command`]s, and delivers what the coordinator sends
//! ([`clients`]). Nothing here knows how the counts are kept.
//!
//! A connect and the close of its transport can race inside socketioxide (0.18): `Namespace::
//! connect` buffers the CONNECT ack and only then marks the socket connected, so a transport that
//! closes in between is fully torn down and then marked connected again; the disconnect handler
//! registered here never runs. The coordinator therefore does not trust `connected()` alone: a
//! greeting that finds the transport closed is that socket's leave, and a periodic sweep drops
//! counted sockets socketioxide no longer holds (ARCHITECTURE.md, "The connect/close race").

mod admission;
mod budget;
pub mod clients;
mod events;
pub mod handshake;

use std::sync::{Arc, Mutex};

use socketioxide::SocketIo;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use tokio::sync::mpsc;

use self::admission::{Refused, SocketAuth};
use self::budget::EventBudget;
use self::clients::socket_id;
use self::handshake::Handshake;
use crate::auth::{RoomGrant, Verifier};
use crate::coordinator::Command;
use crate::metrics::Metrics;
use crate::presence::PresenceBackend;

pub use rollcall_wire::REFRESH_EVENT;

/// What the Socket.IO glue needs.
#[derive(Clone)]
pub struct Glue {
    /// To the coordinator.
    pub commands: mpsc::UnboundedSender<Command>,
    /// For counts and member lists this node does not hold, and the per-user limit.
    pub backend: Arc<dyn PresenceBackend>,
    /// Refusals are counted here.
    pub metrics: Arc<Metrics>,
    /// Token verification (keys loaded at startup).
    pub verifier: Verifier,
    /// Rooms one connection may hold.
    pub max_rooms_per_client: usize,
    /// `join` + `leave` events one connection may send per second (twice that in a burst).
    pub room_events_per_sec: u32,
    /// Connections one signed user may hold over the cluster (0: any number).
    pub max_connections_per_user: usize,
    /// Members listed in a `join` ack with `members: true`.
    pub max_members_listed: u32,
}

/// Registers namespace `/` on `io`: the handshake check, then the connect handler.
pub fn register(io: &SocketIo, glue: Glue) {
    let glue = Arc::new(glue);
    let check = glue.clone();
    let middleware = move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| {
        let check = check.clone();
        async move {
            let query = socket.req_parts().uri.query().map(str::to_owned);
            let handshake = admission::admit(&check, auth.ok().as_ref(), query.as_deref()).await?;
            socket.extensions.insert(handshake);
            Ok::<(), Refused>(())
        }
    };
    let handler = move |socket: SocketRef| {
        on_connect(&glue, &socket);
        std::future::ready(())
    };
    io.ns("/", handler.with(middleware));
}

fn on_connect(glue: &Arc<Glue>, socket: &SocketRef) {
    let id = socket_id(socket.id);
    let handshake = socket.extensions.remove::<Handshake>().unwrap_or_default();
    let (identity, expires, grant) = match handshake.verified {
        Some(v) => (Some(v.identity), Some(v.expires), v.rooms),
        None => (None, None, RoomGrant::Any),
    };
    let auth =
        Arc::new(SocketAuth { user: identity.as_ref().map(|i| i.user.clone()), grant: Mutex::new(grant) });
    let connect = Command::Connect { id, identity, expires, rooms: handshake.rooms };
    if glue.commands.send(connect).is_err() {
        // The coordinator has stopped: the node is shutting down.
        let _ = socket.clone().disconnect();
        return;
    }
    let leave = glue.commands.clone();
    socket.on_disconnect(move || {
        let _ = leave.send(Command::Disconnect { id });
        std::future::ready(())
    });
    events::register(glue, socket, id, auth, EventBudget::new(glue.room_events_per_sec));
    // Closed between the connect and the lines above: that handler will never run. (The
    // coordinator ignores a second disconnect of the same socket.)
    if !socket.connected() {
        let _ = glue.commands.send(Command::Disconnect { id });
    }
}
