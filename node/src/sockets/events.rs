//! The client events a socket may send: `join` / `leave` (rate-limited, acked with the room's
//! counts, and with the member list when asked) and `token` (a fresh token before `exp`).

use std::sync::Arc;

use rollcall_wire::{JOIN_EVENT, LEAVE_EVENT, Member, RoomAck, TOKEN_EVENT, TokenAck};
use socketioxide::extract::{AckSender, SocketRef, TryData};

use super::Glue;
use super::admission::SocketAuth;
use super::budget::EventBudget;
use super::clients::room_count;
use crate::coordinator::{Command, RoomReply, SocketId};
use crate::count::RoomName;

/// What one socket's event handlers share. The three handlers hold one pointer to it between
/// them: an idle socket pays for them on every connection (BENCHMARKS.md, heap per connection).
struct SocketEvents {
    glue: Arc<Glue>,
    auth: Arc<SocketAuth>,
    budget: EventBudget,
    id: SocketId,
}

/// Registers the event handlers of one socket.
pub fn register(
    glue: &Arc<Glue>,
    socket: &SocketRef,
    id: SocketId,
    auth: Arc<SocketAuth>,
    budget: EventBudget,
) {
    let events = Arc::new(SocketEvents { glue: glue.clone(), auth, budget, id });
    for event in [JOIN_EVENT, LEAVE_EVENT] {
        let events = events.clone();
        socket.on(event, move |TryData(data): TryData<serde_json::Value>, ack: AckSender| {
            on_room_event(&events, event == JOIN_EVENT, data.ok(), ack);
            std::future::ready(())
        });
    }
    socket.on(TOKEN_EVENT, move |TryData(data): TryData<serde_json::Value>, ack: AckSender| {
        on_token(&events, data.ok(), ack);
        std::future::ready(())
    });
}

fn on_room_event(events: &SocketEvents, join: bool, data: Option<serde_json::Value>, ack: AckSender) {
    let SocketEvents { glue, auth, budget, id } = events;
    let id = *id;
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
    let allowed = auth.grant.lock().map(|grant| grant.allows(&room)).unwrap_or(false);
    if join && !allowed {
        return refuse(ack, "not_allowed", format!("room {:?} is not allowed by the token", room.as_str()));
    }
    let glue_for_reply = glue.clone();
    let reply = Box::new(move |reply: RoomReply| answer(&glue_for_reply, reply, members, ack));
    let command =
        if join { Command::Join { id, room, members, reply } } else { Command::Leave { id, room, reply } };
    // A stopped coordinator drops the reply: the node is shutting down.
    let _ = glue.commands.send(command);
}

/// Sends a `join` / `leave` ack; with `members`, after reading the member list.
fn answer(glue: &Glue, reply: RoomReply, members: bool, ack: AckSender) {
    let backend = glue.backend.clone();
    let cap = glue.max_members_listed as usize;
    match reply {
        RoomReply::Counts(room, counts) if !members => {
            let _ = ack.send(&RoomAck::counts(room_count(&room, counts)));
        }
        RoomReply::Counts(room, counts) => {
            tokio::spawn(async move {
                let mut body = RoomAck::counts(room_count(&room, counts));
                match backend.members(&room, cap, None).await {
                    Ok(page) => {
                        if let RoomAck::Ok { members, truncated, .. } = &mut body {
                            *members = Some(page.items.into_iter().map(member).collect());
                            *truncated = Some(page.next.is_some());
                        }
                    }
                    Err(error) => {
                        body = RoomAck::refused(format!("the member list cannot be read right now: {error}"))
                    }
                }
                let _ = ack.send(&body);
            });
        }
        RoomReply::Refused(why) => {
            let _ = ack.send(&RoomAck::refused(why));
        }
        RoomReply::NotFollowed(room) => {
            tokio::spawn(async move {
                let body = match backend.room_counts(std::slice::from_ref(&room)).await {
                    Ok(counts) => {
                        RoomAck::counts(room_count(&room, counts.first().copied().unwrap_or_default()))
                    }
                    Err(error) => {
                        RoomAck::refused(format!("the room's count cannot be read right now: {error}"))
                    }
                };
                let _ = ack.send(&body);
            });
        }
    }
}

fn member(m: crate::presence::MemberCount) -> Member {
    let info = m.info.as_deref().and_then(|text| serde_json::from_str(text).ok());
    Member { user: m.user.to_string(), info, connections: m.connections }
}

/// A fresh token: same `sub`, valid; the socket then expires at its `exp`.
fn on_token(events: &SocketEvents, data: Option<serde_json::Value>, ack: AckSender) {
    let SocketEvents { glue, auth, budget, id } = events;
    let id = *id;
    let refuse = |ack: AckSender, reason: &'static str, why: &str| {
        glue.metrics.refuse_auth(reason);
        let _ = ack.send(&TokenAck::Err { ok: false, error: why.to_owned() });
    };
    if !budget.take() {
        return refuse(ack, "rate_limited", "too many events; slow down");
    }
    let Some(user) = &auth.user else {
        return refuse(ack, "anonymous", "this connection is anonymous: sign in at connect");
    };
    let Some(token) = data.as_ref().and_then(serde_json::Value::as_str) else {
        return refuse(ack, "malformed", "the token must be a string");
    };
    match glue.verifier.verify(token) {
        Err(refusal) => refuse(ack, refusal.reason(), refusal.message()),
        Ok(verified) if verified.identity.user != *user => {
            refuse(ack, "other_user", "the token is for another user (sub differs)");
        }
        Ok(verified) => {
            if let Ok(mut grant) = auth.grant.lock() {
                *grant = verified.rooms;
            }
            glue.metrics.tokens_refreshed.inc();
            let _ = glue.commands.send(Command::Refresh { id, expires: verified.expires });
            let _ = ack.send(&TokenAck::Ok { ok: true, exp: verified.expires });
        }
    }
}
