//! A pure parser for the few Engine.IO v4 / Socket.IO v5 text packets the swarm client needs.
//!
//! Engine.IO text packet: `<type digit><payload>` (0 open, 1 close, 2 ping, 3 pong, 4 message,
//! 5 upgrade, 6 noop). A message carries a Socket.IO packet:
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`
//! (0 connect, 1 disconnect, 2 event, 3 ack, 4 connect error, 5 binary event, 6 binary ack).

use serde::Deserialize;

use super::room_wire::{self, RoomUsers};

/// The Engine.IO packet the client sends to answer a ping.
pub const PONG: &str = "3";
/// The Socket.IO packet that connects to the main namespace `/`.
pub const CONNECT_MAIN: &str = "40";
/// The Socket.IO packet that connects to `/` signed in: `auth` is `{ "token": token }`.
pub fn connect_with_token(token: &str) -> String {
    format!("40{}", serde_json::json!({ "token": token }))
}
/// The Socket.IO packet that leaves the main namespace `/`.
pub const DISCONNECT_MAIN: &str = "41";
pub use rollcall_wire::{REFRESH_EVENT, ROOM_USERS_EVENT};

/// Why a text packet could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The packet was empty.
    #[error("empty packet")]
    Empty,
    /// The first character is not a known Engine.IO packet type.
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownEngineType(char),
    /// The Engine.IO open packet did not carry valid handshake JSON.
    #[error("bad open packet: {0}")]
    BadOpen(String),
    /// An Engine.IO message did not carry a Socket.IO packet type.
    #[error("bad Socket.IO packet type")]
    BadSocketType,
}

/// The Engine.IO handshake data sent by the server in its open packet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    /// Engine.IO session id.
    pub sid: String,
    /// Milliseconds between server pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// Largest payload the server accepts, if announced.
    #[serde(default)]
    pub max_payload: Option<u64>,
}

/// One decoded Engine.IO text packet (borrowing from the frame text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{...}`: the handshake.
    Open(OpenInfo),
    /// `1`: the server closes the session.
    Close,
    /// `2`: a heartbeat the client must answer with [`PONG`].
    Ping,
    /// `3`: a heartbeat answer.
    Pong,
    /// `4...`: a Socket.IO packet.
    Message(SocketPacket<'a>),
    /// `5`, `6`: transport upgrade packets, unused over a direct WebSocket.
    Noop,
}

/// One decoded Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketPacket<'a> {
    /// Connected to `namespace`.
    Connect {
        /// Namespace, `/` when absent.
        namespace: &'a str,
    },
    /// The server left `namespace`.
    Disconnect {
        /// Namespace, `/` when absent.
        namespace: &'a str,
    },
    /// An event; `value` is its first argument when that is an integer.
    Event {
        /// Namespace, `/` when absent.
        namespace: &'a str,
        /// Event name, or `None` when the payload is not `["name", ...]`.
        name: Option<String>,
        /// First argument when it is an integer.
        value: Option<i64>,
    },
    /// A `room users` event: one room's count.
    RoomUsers {
        /// Namespace, `/` when absent.
        namespace: &'a str,
        /// The count.
        count: RoomUsers<'a>,
    },
    /// The answer to an event the client sent with an ack id.
    Ack {
        /// Namespace, `/` when absent.
        namespace: &'a str,
        /// The ack id (`None` when missing or not a number).
        id: Option<u32>,
        /// The JSON array of the answer's arguments.
        payload: &'a str,
    },
    /// The server refused the namespace connection; the raw payload.
    ConnectError(&'a str),
    /// Binary packets: ignored by the swarm.
    Other,
}

/// Decodes one Engine.IO text frame. Never panics; unknown or malformed input is an error.
pub fn parse(text: &str) -> Result<Packet<'_>, ParseError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(ParseError::Empty)?;
    let rest = chars.as_str();
    match kind {
        '0' => serde_json::from_str(rest)
            .map(Packet::Open)
            .map_err(|error| ParseError::BadOpen(error.to_string())),
        '1' => Ok(Packet::Close),
        '2' => Ok(Packet::Ping),
        '3' => Ok(Packet::Pong),
        '4' => parse_socket(rest).map(Packet::Message),
        '5' | '6' => Ok(Packet::Noop),
        other => Err(ParseError::UnknownEngineType(other)),
    }
}

/// Decodes the Socket.IO packet inside an Engine.IO message.
fn parse_socket(text: &str) -> Result<SocketPacket<'_>, ParseError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(ParseError::BadSocketType)?;
    let (namespace, body) = split_namespace(chars.as_str());
    match kind {
        '0' => Ok(SocketPacket::Connect { namespace }),
        '1' => Ok(SocketPacket::Disconnect { namespace }),
        '2' => Ok(parse_event(namespace, skip_ack_id(body))),
        '3' => Ok(parse_ack(namespace, body)),
        '4' => Ok(SocketPacket::ConnectError(body)),
        '5' | '6' => Ok(SocketPacket::Other),
        _ => Err(ParseError::BadSocketType),
    }
}

/// Splits an optional `/namespace,` prefix off a Socket.IO packet body.
fn split_namespace(body: &str) -> (&str, &str) {
    if body.starts_with('/') {
        match body.split_once(',') {
            Some((namespace, rest)) => (namespace, rest),
            None => (body, ""),
        }
    } else {
        ("/", body)
    }
}

/// Skips the optional numeric ack id in front of an event's JSON array.
fn skip_ack_id(body: &str) -> &str {
    body.trim_start_matches(|c: char| c.is_ascii_digit())
}

/// Splits `<ack id><JSON>`: the id (if it is one) and the arguments.
fn parse_ack<'a>(namespace: &'a str, body: &'a str) -> SocketPacket<'a> {
    let payload = skip_ack_id(body);
    let id = body[..body.len() - payload.len()].parse().ok();
    SocketPacket::Ack { namespace, id, payload }
}

/// Decodes `["name", arg, ...]`, with fast paths for `["refresh users",N]` and the node's
/// `["room users",{...}]`.
fn parse_event<'a>(namespace: &'a str, json: &'a str) -> SocketPacket<'a> {
    if let Some(value) = fast_refresh(json) {
        return SocketPacket::Event { namespace, name: Some(REFRESH_EVENT.to_owned()), value: Some(value) };
    }
    if let Some(count) = room_wire::fast_room_users(json) {
        return SocketPacket::RoomUsers { namespace, count };
    }
    let parsed: Option<Vec<serde_json::Value>> = serde_json::from_str(json).ok();
    let mut args = parsed.unwrap_or_default().into_iter();
    let name = match args.next() {
        Some(serde_json::Value::String(name)) => Some(name),
        _ => None,
    };
    if name.as_deref() == Some(ROOM_USERS_EVENT)
        && let Some(count) = args.next().and_then(room_wire::room_users_value)
    {
        return SocketPacket::RoomUsers { namespace, count };
    }
    let value = args.next().and_then(|value| value.as_i64());
    SocketPacket::Event { namespace, name, value }
}

/// Reads `["refresh users",N]` without allocating; `None` for anything else.
fn fast_refresh(json: &str) -> Option<i64> {
    let inner = json.strip_prefix("[\"refresh users\",")?.strip_suffix(']')?;
    inner.trim().parse().ok()
}

/// Returns the room count carried by a packet, if it is a `room users` event on `/`.
pub fn room_users<'p, 'a>(packet: &'p Packet<'a>) -> Option<&'p RoomUsers<'a>> {
    match packet {
        Packet::Message(SocketPacket::RoomUsers { namespace: "/", count }) => Some(count),
        _ => None,
    }
}

/// Returns the presence total carried by a packet, if it is a `refresh users` event on `/`.
pub fn refresh_total(packet: &Packet<'_>) -> Option<i64> {
    match packet {
        Packet::Message(SocketPacket::Event { namespace: "/", name: Some(name), value })
            if name == REFRESH_EVENT =>
        {
            *value
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
