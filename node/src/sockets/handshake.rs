//! What a client asks for in its Socket.IO handshake: rooms to join at once (the `auth` object's
//! `rooms` array and repeated `room=` query parameters), checked before the socket is accepted.

use crate::auth::Verified;
use crate::count::RoomName;

/// A handshake that passed every check; the connect handler takes it from the socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handshake {
    /// Rooms to join at connect, without duplicates.
    pub rooms: Vec<RoomName>,
    /// The verified token of a signed client.
    pub verified: Option<Verified>,
}

/// Why a handshake is refused; the text reaches the client as the CONNECT_ERROR `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A room name is not valid.
    #[error("invalid room {name}: {reason}")]
    InvalidRoom {
        /// The name as sent (JSON), shortened.
        name: String,
        /// Why.
        reason: String,
    },
    /// `auth.rooms` is there but not an array.
    #[error("auth.rooms must be an array of room names")]
    RoomsNotAnArray,
    /// More rooms than one connection may hold.
    #[error("too many rooms: {asked} asked, at most {max} per connection")]
    TooManyRooms {
        /// Rooms asked for.
        asked: usize,
        /// The limit.
        max: usize,
    },
}

impl HandshakeError {
    /// The metric label of this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::InvalidRoom { .. } | HandshakeError::RoomsNotAnArray => "invalid",
            HandshakeError::TooManyRooms { .. } => "max_rooms",
        }
    }
}

/// Reads the rooms from the handshake's `auth` object and query string.
pub fn rooms(
    auth: Option<&serde_json::Value>,
    query: Option<&str>,
    max: usize,
) -> Result<Handshake, HandshakeError> {
    let mut rooms: Vec<RoomName> = Vec::new();
    let add = |rooms: &mut Vec<RoomName>, room: RoomName| {
        if !rooms.contains(&room) {
            rooms.push(room);
        }
    };
    if let Some(list) = auth.and_then(|a| a.get("rooms")) {
        let list = list.as_array().ok_or(HandshakeError::RoomsNotAnArray)?;
        if list.len() > max {
            return Err(HandshakeError::TooManyRooms { asked: list.len(), max });
        }
        for value in list {
            add(&mut rooms, RoomName::from_json(value).map_err(|e| invalid(&value.to_string(), &e))?);
        }
    }
    // Every distinct name is counted, so the refusal says how many were asked; the query string
    // is bounded by the HTTP head's size.
    let mut beyond = std::collections::HashSet::new();
    for value in crate::query::values(query.unwrap_or_default(), "room") {
        let name = value.map_err(|raw| invalid(raw, &"not UTF-8 once percent-decoded"))?;
        let room = RoomName::new(&name).map_err(|e| invalid(&format!("{name:?}"), &e))?;
        if rooms.len() < max || rooms.contains(&room) {
            add(&mut rooms, room);
        } else {
            beyond.insert(room);
        }
    }
    if !beyond.is_empty() {
        return Err(HandshakeError::TooManyRooms { asked: rooms.len() + beyond.len(), max });
    }
    Ok(Handshake { rooms, verified: None })
}

fn invalid(name: &str, reason: &impl std::fmt::Display) -> HandshakeError {
    let mut name = name.to_owned();
    if name.len() > 80 {
        let cut = (0..=80).rev().find(|i| name.is_char_boundary(*i)).unwrap_or(0);
        name.truncate(cut);
        name.push('…');
    }
    HandshakeError::InvalidRoom { name, reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(h: &Handshake) -> Vec<&str> {
        h.rooms.iter().map(RoomName::as_str).collect()
    }

    #[test]
    fn rooms_come_from_auth_and_the_query() {
        let auth = json!({ "rooms": ["a", "b"] });
        let h = rooms(Some(&auth), Some("EIO=4&transport=websocket&room=%2Fblog%2Fx&room=a,b&room=a"), 16)
            .expect("ok");
        assert_eq!(names(&h), ["a", "b", "/blog/x", "a,b"]);
        assert_eq!(rooms(None, None, 16), Ok(Handshake::default()));
    }

    #[test]
    fn bad_rooms_are_refused_with_a_reason() {
        let err =
            |auth: serde_json::Value, query: &str| rooms(Some(&auth), Some(query), 2).expect_err("refused");
        assert_eq!(err(json!({"rooms": "a"}), ""), HandshakeError::RoomsNotAnArray);
        assert!(err(json!({"rooms": [7]}), "").to_string().contains("must be a string"));
        assert!(err(json!({}), "room=").to_string().contains("empty"));
        assert!(err(json!({}), "room=a%0Ab").to_string().contains("control"));
        assert!(err(json!({}), "room=%FF").to_string().contains("not UTF-8"));
        assert_eq!(
            err(json!({}), "room=a&room=b&room=c&room=d&room=c"),
            HandshakeError::TooManyRooms { asked: 4, max: 2 }
        );
        assert_eq!(
            err(json!({"rooms": ["a", "b", "c"]}), ""),
            HandshakeError::TooManyRooms { asked: 3, max: 2 }
        );
        assert_eq!(
            err(json!({"rooms": ["a"]}), "room=b&room=c"),
            HandshakeError::TooManyRooms { asked: 3, max: 2 }
        );
    }
}
