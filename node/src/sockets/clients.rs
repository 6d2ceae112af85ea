//! [`Clients`] over socketioxide: broadcasts on namespace `/` and to Socket.IO rooms (`r:<room>`
//! for counts, `m:<room>` for member changes), greetings to one socket.

use std::collections::HashSet;
use std::str::FromStr;

use async_trait::async_trait;
use rollcall_wire::{MEMBER_JOINED_EVENT, MEMBER_LEFT_EVENT, REFRESH_EVENT, ROOM_USERS_EVENT, RoomCount};
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError, SocketIo};

use crate::coordinator::{Clients, Greeted, SocketId};
use crate::count::RoomName;
use crate::presence::{Counts, Member};

/// The coordinator's id of a socket: its 16-character Engine.IO session id, as a number.
pub fn socket_id(sid: Sid) -> SocketId {
    let mut bytes = [0u8; 16];
    for (slot, byte) in bytes.iter_mut().zip(sid.to_string().bytes()) {
        *slot = byte;
    }
    SocketId(u128::from_be_bytes(bytes))
}

fn sid_of(id: SocketId) -> Option<Sid> {
    std::str::from_utf8(&id.0.to_be_bytes()).ok().and_then(|text| Sid::from_str(text).ok())
}

fn counts_room(room: &RoomName) -> String {
    format!("r:{room}")
}

fn members_room(room: &RoomName) -> String {
    format!("m:{room}")
}

/// The `room users` payload.
pub fn room_count(room: &RoomName, counts: Counts) -> RoomCount {
    RoomCount { room: room.to_string(), users: counts.users, connections: counts.connections }
}

fn greeted(result: Result<(), SendError>) -> Greeted {
    match result {
        Err(SendError::Socket(SocketError::Closed)) => Greeted::Gone,
        // A full buffer means a slow client, not a gone one: it gets the next broadcast.
        _ => Greeted::Delivered,
    }
}

/// The socketioxide side of the coordinator.
pub struct SocketIoClients(pub SocketIo);

impl SocketIoClients {
    fn socket(&self, id: SocketId) -> Option<SocketRef> {
        self.0.of("/")?.get_socket(sid_of(id)?)
    }
}

#[async_trait]
impl Clients for SocketIoClients {
    async fn broadcast(&self, value: i64) {
        if let Err(error) = self.0.emit(REFRESH_EVENT, &value).await {
            // A client whose buffer is full misses this value; it gets the next one, and a
            // client that stays that slow is dropped by the Engine.IO ping timeout.
            tracing::debug!(%error, "some clients missed a refresh");
        }
    }

    fn greet(&self, socket: SocketId, value: i64) -> Greeted {
        self.socket(socket).map_or(Greeted::Gone, |s| greeted(s.emit(REFRESH_EVENT, &value)))
    }

    async fn broadcast_room(&self, room: &RoomName, counts: Counts) {
        if let Err(error) =
            self.0.to(counts_room(room)).emit(ROOM_USERS_EVENT, &room_count(room, counts)).await
        {
            tracing::debug!(%error, %room, "some clients missed a room count");
        }
    }

    fn greet_room(&self, socket: SocketId, room: &RoomName, counts: Counts) -> Greeted {
        let payload = room_count(room, counts);
        self.socket(socket).map_or(Greeted::Gone, |s| greeted(s.emit(ROOM_USERS_EVENT, &payload)))
    }

    fn enter(&self, socket: SocketId, room: &RoomName, members: bool) {
        if let Some(s) = self.socket(socket) {
            s.join(counts_room(room));
            if members {
                s.join(members_room(room));
            }
        }
    }

    fn exit(&self, socket: SocketId, room: &RoomName) {
        if let Some(s) = self.socket(socket) {
            s.leave([counts_room(room), members_room(room)]);
        }
    }

    async fn member_change(&self, room: &RoomName, member: &Member, joined: bool) {
        let info =
            member.info.as_deref().and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok());
        let payload = serde_json::json!({ "room": room.as_str(), "user": &*member.user, "info": info });
        let event = if joined { MEMBER_JOINED_EVENT } else { MEMBER_LEFT_EVENT };
        if let Err(error) = self.0.to(members_room(room)).emit(event, &payload).await {
            tracing::debug!(%error, %room, "some clients missed a member change");
        }
    }

    fn disconnect(&self, socket: SocketId) {
        if let Some(s) = self.socket(socket) {
            let _ = s.disconnect();
        }
    }

    fn live(&self) -> Option<HashSet<SocketId>> {
        let main = self.0.of("/")?;
        Some(main.sockets().into_iter().map(|socket| socket_id(socket.id)).collect())
    }
}
