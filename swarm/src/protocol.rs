//! A pure parser for the few Engine.IO v4 / Socket.IO v5 text packets the swarm client needs.
//!
//! Engine.IO text packet: `<type digit><payload>` (0 open, 1 close, 2 ping, 3 pong, 4 message,
//! 5 upgrade, 6 noop). A message carries a Socket.IO packet:
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`
//! (0 connect, 1 disconnect, 2 event, 3 ack, 4 connect error, 5 binary event, 6 binary ack).

use serde::Deserialize;

/// The Engine.IO packet the client sends to answer a ping.
pub const PONG: &str = "3";
/// The Socket.IO packet that connects to the main namespace `/`.
pub const CONNECT_MAIN: &str = "40";
/// The Socket.IO packet that leaves the main namespace `/`.
pub const DISCONNECT_MAIN: &str = "41";
pub use rollcall_wire::REFRESH_EVENT;

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
    /// The server refused the namespace connection; the raw payload.
    ConnectError(&'a str),
    /// Acks and binary packets: ignored by the swarm.
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
        '4' => Ok(SocketPacket::ConnectError(body)),
        '3' | '5' | '6' => Ok(SocketPacket::Other),
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

/// Decodes `["name", arg, ...]`, with a fast path for `["refresh users",N]`.
fn parse_event<'a>(namespace: &'a str, json: &str) -> SocketPacket<'a> {
    if let Some(value) = fast_refresh(json) {
        return SocketPacket::Event { namespace, name: Some(REFRESH_EVENT.to_owned()), value: Some(value) };
    }
    let parsed: Option<Vec<serde_json::Value>> = serde_json::from_str(json).ok();
    let mut args = parsed.unwrap_or_default().into_iter();
    let name = match args.next() {
        Some(serde_json::Value::String(name)) => Some(name),
        _ => None,
    };
    let value = args.next().and_then(|value| value.as_i64());
    SocketPacket::Event { namespace, name, value }
}

/// Reads `["refresh users",N]` without allocating; `None` for anything else.
fn fast_refresh(json: &str) -> Option<i64> {
    let inner = json.strip_prefix("[\"refresh users\",")?.strip_suffix(']')?;
    inner.trim().parse().ok()
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
mod tests {
    use super::*;

    #[test]
    fn open_packet() {
        let text = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let Ok(Packet::Open(open)) = parse(text) else { panic!("not an open packet") };
        assert_eq!(open.sid, "lv_VI97HAXpY6yYWAAAC");
        assert_eq!(open.ping_interval, 25000);
        assert_eq!(open.ping_timeout, 20000);
        assert_eq!(open.max_payload, Some(1_000_000));
    }

    #[test]
    fn heartbeats_and_close() {
        assert_eq!(parse("2"), Ok(Packet::Ping));
        assert_eq!(parse("3"), Ok(Packet::Pong));
        assert_eq!(parse("1"), Ok(Packet::Close));
        assert_eq!(parse("6"), Ok(Packet::Noop));
    }

    #[test]
    fn socket_connect_and_disconnect() {
        let connect = parse(r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#);
        assert_eq!(connect, Ok(Packet::Message(SocketPacket::Connect { namespace: "/" })));
        let admin = parse(r#"40/admin,{"sid":"x"}"#);
        assert_eq!(admin, Ok(Packet::Message(SocketPacket::Connect { namespace: "/admin" })));
        assert_eq!(parse("41"), Ok(Packet::Message(SocketPacket::Disconnect { namespace: "/" })));
    }

    #[test]
    fn refresh_event_with_integer() {
        let packet = parse(r#"42["refresh users",12]"#).expect("parses");
        assert_eq!(refresh_total(&packet), Some(12));
        let spaced = parse(r#"42[ "refresh users" , 50000 ]"#).expect("parses");
        assert_eq!(refresh_total(&spaced), Some(50000));
        let with_ack = parse(r#"4217["refresh users",3,"extra"]"#).expect("parses");
        assert_eq!(refresh_total(&with_ack), Some(3));
    }

    #[test]
    fn other_events_and_namespaces_carry_no_total() {
        let other = parse(r#"42["chat",5]"#).expect("parses");
        assert_eq!(refresh_total(&other), None);
        let admin = parse(r#"42/admin,["refresh users",5]"#).expect("parses");
        assert_eq!(refresh_total(&admin), None);
        let text_value = parse(r#"42["refresh users","many"]"#).expect("parses");
        assert_eq!(refresh_total(&text_value), None);
    }

    #[test]
    fn binary_and_acks_are_ignored() {
        let binary = parse(r#"451-["refresh users",{"_placeholder":true,"num":0}]"#);
        assert_eq!(binary, Ok(Packet::Message(SocketPacket::Other)));
        assert_eq!(parse(r#"431[1]"#), Ok(Packet::Message(SocketPacket::Other)));
    }

    #[test]
    fn connect_error_payload() {
        let error = parse(r#"44{"message":"Not authorized"}"#);
        let expected = SocketPacket::ConnectError(r#"{"message":"Not authorized"}"#);
        assert_eq!(error, Ok(Packet::Message(expected)));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("x"), Err(ParseError::UnknownEngineType('x')));
        assert!(matches!(parse("0{not json"), Err(ParseError::BadOpen(_))));
        assert!(matches!(parse("0"), Err(ParseError::BadOpen(_))));
        assert_eq!(parse("4"), Err(ParseError::BadSocketType));
        assert_eq!(parse("49"), Err(ParseError::BadSocketType));
        let broken = parse(r#"42["refresh users",12"#).expect("an event, even if its JSON is cut");
        assert_eq!(refresh_total(&broken), None);
        assert_eq!(parse("4é"), Err(ParseError::BadSocketType));
        assert_eq!(parse("é"), Err(ParseError::UnknownEngineType('é')));
    }
}
