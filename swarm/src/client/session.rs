//! A connected client's loop: pings, `refresh users` and `room users`, and the room moves its
//! worker asks for (through [`Mover`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{ClientCell, ClientEvent, ClientSpec, Ws, send, ws_kind};
use crate::messages::now_us;
use crate::mover::{Mover, Next};
use crate::protocol::{self, Packet, SocketPacket};
use crate::rooms::RoomPlan;

/// A connected client's loop: what it needs besides the socket.
pub(super) struct Session<'a> {
    pub(super) spec: &'a ClientSpec,
    pub(super) cell: &'a ClientCell,
    pub(super) slot: usize,
    pub(super) events: &'a mpsc::UnboundedSender<ClientEvent>,
}

impl Session<'_> {
    /// Answers pings, records totals and room counts, and makes the room moves its worker asks
    /// for, until the connection ends; returns why it ended.
    pub(super) async fn serve(&self, ws: &mut Ws) -> String {
        let mut mover = Mover::default();
        loop {
            let ack_deadline = mover.started_us().map(|started| self.ack_deadline(started));
            let frame = tokio::select! {
                frame = ws.next() => frame,
                () = self.cell.wake.notified(), if self.spec.rooms.is_some() => {
                    if let Err(kind) = self.start_move(ws, &mut mover).await {
                        return format!("dropped_{kind}");
                    }
                    continue;
                }
                () = sleep_until(ack_deadline), if ack_deadline.is_some() => {
                    return "dropped_ack_timeout".to_owned();
                }
            };
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => return "dropped_closed".to_owned(),
                Some(Ok(_)) => continue,
                Some(Err(error)) => return format!("dropped_{}", ws_kind(&error)),
            };
            if let Err(kind) = self.on_text(ws, &mut mover, text.as_str()).await {
                return kind;
            }
        }
    }

    /// Handles one text frame; the error is why the client ends.
    async fn on_text(&self, ws: &mut Ws, mover: &mut Mover, text: &str) -> Result<(), String> {
        match protocol::parse(text) {
            Ok(Packet::Ping) => send(ws, protocol::PONG).await.map_err(|kind| format!("dropped_{kind}")),
            Ok(Packet::Close) => Err("dropped_engineio_close".to_owned()),
            Ok(Packet::Message(SocketPacket::Disconnect { namespace: "/" })) => {
                Err("dropped_server_disconnect".to_owned())
            }
            Ok(Packet::Message(SocketPacket::Ack { namespace: "/", id: Some(id), payload })) => {
                let Some(plan) = self.spec.rooms.as_deref() else { return Ok(()) };
                match mover.on_ack(id, payload, self.cell, plan, now_us()) {
                    Next::Send(packet) => {
                        ws.send(Message::text(packet)).await.map_err(|e| format!("dropped_{}", ws_kind(&e)))
                    }
                    Next::Done(outcome) => {
                        let _ = self.events.send(ClientEvent::Moved { slot: self.slot, outcome });
                        // The worker may have asked again meanwhile.
                        self.start_move(ws, mover).await.map_err(|kind| format!("dropped_{kind}"))
                    }
                    Next::Ignore => Ok(()),
                }
            }
            Ok(packet) => {
                observe(&packet, self.cell, self.spec.rooms.as_deref());
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    /// Sends the first packet of a move to `wanted_room`, if there is one to make.
    async fn start_move(&self, ws: &mut Ws, mover: &mut Mover) -> Result<(), String> {
        let Some(plan) = self.spec.rooms.as_deref() else { return Ok(()) };
        match mover.start(self.cell, plan, now_us()) {
            Some(packet) => ws.send(Message::text(packet)).await.map_err(|error| ws_kind(&error)),
            None => Ok(()),
        }
    }

    fn ack_deadline(&self, started_us: u64) -> tokio::time::Instant {
        let waited = Duration::from_micros(now_us().saturating_sub(started_us));
        tokio::time::Instant::now() + self.spec.timeout.saturating_sub(waited)
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Records a `refresh users` total, or a `room users` count of the client's room.
pub(super) fn observe(packet: &Packet<'_>, cell: &ClientCell, rooms: Option<&RoomPlan>) {
    if let Some(total) = protocol::refresh_total(packet) {
        cell.messages.fetch_add(1, Ordering::Relaxed);
        if cell.last_value.swap(total, Ordering::AcqRel) != total {
            cell.changed_at_us.store(now_us(), Ordering::Release);
        }
        return;
    }
    let Some(count) = protocol::room_users(packet) else {
        return;
    };
    cell.room_messages.fetch_add(1, Ordering::Relaxed);
    let room = cell.room.load(Ordering::Acquire);
    let ours = rooms.and_then(|plan| plan.index_of(&count.room)).is_some_and(|index| index == room);
    if !ours {
        return;
    }
    let users_changed = cell.room_users.swap(count.users, Ordering::AcqRel) != count.users;
    if cell.room_value.swap(count.connections, Ordering::AcqRel) != count.connections || users_changed {
        cell.room_changed_at_us.store(now_us(), Ordering::Release);
    }
}
