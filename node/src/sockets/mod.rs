//! The Socket.IO side: socketioxide wiring that turns handshakes, disconnects and `join` /
//! `leave` events into [`Command`]s, and delivers what the coordinator sends ([`clients`]).
//! Nothing here knows how the counts are kept.
//!
//! A connect and the close of its transport can race inside socketioxide (0.18): `Namespace::
//! connect` buffers the CONNECT ack and only then marks the socket connected, so a transport that
//! closes in between is fully torn down and then marked connected again; the disconnect handler
//! registered here never runs. The coordinator therefore does not trust `connected()` alone: a
//! greeting that finds the transport closed is that socket's leave, and a periodic sweep drops
//! counted sockets socketioxide no longer holds (ARCHITECTURE.md, "The connect/close race").

mod budget;
pub mod clients;
pub mod handshake;

use std::sync::Arc;

use rollcall_wire::{JOIN_EVENT, LEAVE_EVENT, RoomAck};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use tokio::sync::mpsc;

use self::budget::EventBudget;
use self::clients::{room_count, socket_id};
use self::handshake::{Handshake, HandshakeError};
use crate::coordinator::{Command, RoomReply};
use crate::count::RoomName;
use crate::metrics::Metrics;
use crate::presence::PresenceBackend;

pub use rollcall_wire::REFRESH_EVENT;

/// What the Socket.IO glue needs.
#[derive(Clone)]
pub struct Glue {
    /// To the coordinator.
    pub commands: mpsc::UnboundedSender<Command>,
    /// For the counts of rooms this node does not follow (a `leave` of a room one is not in).
    pub backend: Arc<dyn PresenceBackend>,
    /// Refusals are counted here.
    pub metrics: Arc<Metrics>,
    /// Rooms one connection may hold.
    pub max_rooms_per_client: usize,
    /// `join` + `leave` events one connection may send per second (twice that in a burst).
    pub room_events_per_sec: u32,
}

/// Registers namespace `/` on `io`: the handshake check, then the connect handler.
pub fn register(io: &SocketIo, glue: Glue) {
    let check = glue.clone();
    let middleware = move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| {
        let check = check.clone();
        async move {
            let query = socket.req_parts().uri.query();
            match handshake::rooms(auth.ok().as_ref(), query, check.max_rooms_per_client) {
                Ok(handshake) => {
                    socket.extensions.insert(handshake);
                    Ok(())
                }
                Err(error) => {
                    check.metrics.refuse_join(error.reason());
                    Err::<(), HandshakeError>(error)
                }
            }
        }
    };
    let handler = move |socket: SocketRef| {
        on_connect(&glue, &socket);
        std::future::ready(())
    };
    io.ns("/", handler.with(middleware));
}

fn on_connect(glue: &Glue, socket: &SocketRef) {
    let id = socket_id(socket.id);
    let rooms = socket.extensions.remove::<Handshake>().unwrap_or_default().rooms;
    if glue.commands.send(Command::Connect { id, identity: None, rooms }).is_err() {
        // The coordinator has stopped: the node is shutting down.
        let _ = socket.clone().disconnect();
        return;
    }
    let leave = glue.commands.clone();
    socket.on_disconnect(move || {
        let _ = leave.send(Command::Disconnect { id });
        std::future::ready(())
    });
    let budget = Arc::new(EventBudget::new(glue.room_events_per_sec));
    for event in [JOIN_EVENT, LEAVE_EVENT] {
        let (glue, budget) = (glue.clone(), budget.clone());
        socket.on(event, move |TryData(data): TryData<serde_json::Value>, ack: AckSender| {
            on_room_event(&glue, &budget, id, event == JOIN_EVENT, data.ok(), ack);
            std::future::ready(())
        });
    }
    // Closed between the connect and the lines above: that handler will never run. (The
    // coordinator ignores a second disconnect of the same socket.)
    if !socket.connected() {
        let _ = glue.commands.send(Command::Disconnect { id });
    }
}

fn on_room_event(
    glue: &Glue,
    budget: &EventBudget,
    id: crate::coordinator::SocketId,
    join: bool,
    data: Option<serde_json::Value>,
    ack: AckSender,
) {
    let refuse = |ack: AckSender, reason: &'static str, why: String| {
        glue.metrics.refuse_join(reason);
        let _ = ack.send(&RoomAck::refused(why));
    };
    if !budget.take() {
        return refuse(ack, "rate_limited", "too many join/leave events; slow down".to_owned());
    }
    let (name, members) = match &data {
        Some(serde_json::Value::Object(fields)) if join => {
            let members = fields.get("members").and_then(serde_json::Value::as_bool).unwrap_or(false);
            (fields.get("room").cloned().unwrap_or_default(), members)
        }
        Some(value) => (value.clone(), false),
        None => (serde_json::Value::Null, false),
    };
    let room = match RoomName::from_json(&name) {
        Ok(room) => room,
        Err(error) => return refuse(ack, "invalid", error.to_string()),
    };
    let backend = glue.backend.clone();
    let reply = Box::new(move |reply: RoomReply| answer(reply, ack, backend));
    let command =
        if join { Command::Join { id, room, members, reply } } else { Command::Leave { id, room, reply } };
    // A stopped coordinator drops the reply: the node is shutting down.
    let _ = glue.commands.send(command);
}

/// Sends a `join` / `leave` ack.
fn answer(reply: RoomReply, ack: AckSender, backend: Arc<dyn PresenceBackend>) {
    match reply {
        RoomReply::Counts(room, counts) => {
            let _ = ack.send(&RoomAck::counts(room_count(&room, counts)));
        }
        RoomReply::Refused(why) => {
            let _ = ack.send(&RoomAck::refused(why));
        }
        RoomReply::NotFollowed(room) => {
            tokio::spawn(async move {
                let ack_body = match backend.room_counts(std::slice::from_ref(&room)).await {
                    Ok(counts) => {
                        RoomAck::counts(room_count(&room, counts.first().copied().unwrap_or_default()))
                    }
                    Err(error) => {
                        RoomAck::refused(format!("the room's count cannot be read right now: {error}"))
                    }
                };
                let _ = ack.send(&ack_body);
            });
        }
    }
}
