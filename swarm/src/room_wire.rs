//! The room packets of the lean client: reading `42["room users",{...}]` without allocating
//! (the node's serialization, field order `room`, `users`, `connections`, is the fast path), the
//! `join` / `leave` events with an ack id, and their acks `43<id>[{...}]`.

use std::borrow::Cow;

use rollcall_wire::{JOIN_EVENT, LEAVE_EVENT, RoomAck, RoomCount};

/// One `room users` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomUsers<'a> {
    /// The room (borrowed from the frame unless it had escapes).
    pub room: Cow<'a, str>,
    /// Distinct users.
    pub users: i64,
    /// Connections.
    pub connections: i64,
}

/// Reads `["room users",{"room":"R","users":U,"connections":C}]` as the node writes it, without
/// allocating; `None` for anything else (the caller falls back to a full JSON parse).
pub fn fast_room_users(json: &str) -> Option<RoomUsers<'_>> {
    let rest = json.strip_prefix("[\"room users\",{\"room\":\"")?;
    let end = rest.find('"')?;
    let (room, rest) = rest.split_at(end);
    if room.contains('\\') {
        return None;
    }
    let rest = rest.strip_prefix("\",\"users\":")?;
    let (users, rest) = rest.split_once(',')?;
    let connections = rest.strip_prefix("\"connections\":")?.strip_suffix("}]")?;
    Some(RoomUsers {
        room: Cow::Borrowed(room),
        users: users.parse().ok()?,
        connections: connections.parse().ok()?,
    })
}

/// The slow path: the second argument of a `room users` event as any JSON object.
pub fn room_users_value(value: serde_json::Value) -> Option<RoomUsers<'static>> {
    let count: RoomCount = serde_json::from_value(value).ok()?;
    Some(RoomUsers { room: Cow::Owned(count.room), users: count.users, connections: count.connections })
}

/// `42<ack>["join","<room>"]`.
pub fn join_packet(ack: u32, room: &str) -> String {
    event_packet(ack, JOIN_EVENT, room)
}

/// `42<ack>["leave","<room>"]`.
pub fn leave_packet(ack: u32, room: &str) -> String {
    event_packet(ack, LEAVE_EVENT, room)
}

fn event_packet(ack: u32, event: &str, room: &str) -> String {
    let room = serde_json::Value::from(room);
    format!("42{ack}[\"{event}\",{room}]")
}

/// The answer to a `join` or `leave`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckAnswer {
    /// Done: the room's connections with the change included.
    Counts {
        /// The room.
        room: String,
        /// Its connections.
        connections: i64,
    },
    /// Refused, with the node's reason.
    Refused(String),
}

/// Decodes the payload of an ack (`[{"ok":...}]`, the part after `43<id>`).
pub fn ack_answer(payload: &str) -> Result<AckAnswer, String> {
    let [ack]: [RoomAck; 1] = serde_json::from_str(payload).map_err(|_| "bad_ack".to_owned())?;
    Ok(match ack {
        RoomAck::Ok { ok: true, room, connections, .. } => AckAnswer::Counts { room, connections },
        RoomAck::Ok { .. } => return Err("bad_ack".to_owned()),
        RoomAck::Err { error, .. } => AckAnswer::Refused(error),
    })
}

/// A short, stable kind for a refusal text (for error counts).
pub fn refusal_kind(reason: &str) -> &'static str {
    if reason.contains("slow down") {
        "refused_rate_limited"
    } else if reason.contains("the most allowed") {
        "refused_max_rooms"
    } else if reason.contains("room name") {
        "refused_invalid"
    } else if reason.contains("not connected") {
        "refused_not_connected"
    } else {
        "refused"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_room_users_parse_without_allocating() {
        let json = r#"["room users",{"room":"room-17","users":5,"connections":6}]"#;
        let users = fast_room_users(json).expect("fast path");
        assert!(matches!(users.room, Cow::Borrowed("room-17")));
        assert_eq!((users.users, users.connections), (5, 6));
        // The node's own serialization takes the fast path.
        let node = serde_json::to_string(&(
            "room users",
            RoomCount { room: "/blog/a b".to_owned(), users: 1, connections: 2 },
        ))
        .expect("json");
        assert_eq!(fast_room_users(&node).map(|u| u.connections), Some(2));
    }

    #[test]
    fn other_shapes_take_the_slow_path() {
        for other in [
            r#"["room users",{"users":5,"room":"a","connections":6}]"#,
            r#"["room users",{"room":"a\"b","users":5,"connections":6}]"#,
            r#"["room users",{"room":"a","users":5,"connections":6},1]"#,
            r#"["room users",{"room":"a","users":x,"connections":6}]"#,
            r#"["refresh users",3]"#,
            r#"["room users",{"room":"a","users":5"#,
        ] {
            assert_eq!(fast_room_users(other), None, "{other}");
        }
        let value = serde_json::json!({ "connections": 6, "users": 5, "room": "a\"b" });
        let slow = room_users_value(value).expect("an object with the three fields");
        assert_eq!((slow.room.as_ref(), slow.connections), ("a\"b", 6));
        assert_eq!(room_users_value(serde_json::json!(3)), None);
    }

    #[test]
    fn join_and_leave_packets_escape_the_room() {
        assert_eq!(join_packet(7, "room-3"), r#"427["join","room-3"]"#);
        assert_eq!(leave_packet(0, r#"a"b"#), r#"420["leave","a\"b"]"#);
    }

    #[test]
    fn acks_decode() {
        let ok = r#"[{"ok":true,"room":"room-3","users":4,"connections":4}]"#;
        assert_eq!(ack_answer(ok), Ok(AckAnswer::Counts { room: "room-3".to_owned(), connections: 4 }));
        let refused = r#"[{"ok":false,"error":"too many join/leave events; slow down"}]"#;
        let Ok(AckAnswer::Refused(reason)) = ack_answer(refused) else { panic!("a refusal") };
        assert_eq!(refusal_kind(&reason), "refused_rate_limited");
        assert_eq!(ack_answer("[]"), Err("bad_ack".to_owned()));
        assert_eq!(
            ack_answer(r#"[{"ok":false,"room":"a","users":1,"connections":1}]"#),
            Err("bad_ack".to_owned())
        );
        assert_eq!(ack_answer("[1,2]"), Err("bad_ack".to_owned()));
    }
}
