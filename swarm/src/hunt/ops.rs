//! The table of sequences the hunt mixes. Each is a short, racy way to use a node that must
//! leave the count exactly where it was (transient sequences) or change it by a known amount
//! (the held-client sequences). A new operation is one variant and one row of [`OPS`].

use std::fmt;

use serde::Serialize;

/// One kind of sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// WebSocket: Engine.IO open, send CONNECT `40`, hang up TCP on the next tick (FIN, no close frame).
    WsConnectHangup,
    /// The same, ending with a TCP reset (SO_LINGER 0) instead of a FIN.
    WsConnectReset,
    /// WebSocket: CONNECT and an Engine.IO close `1` in one write, then hang up.
    WsConnectClose,
    /// WebSocket: CONNECT and a WebSocket close frame in one write, then hang up.
    WsConnectCloseFrame,
    /// WebSocket: CONNECT, wait for the CONNECT ack, hang up TCP.
    WsAckHangup,
    /// WebSocket: CONNECT, wait for the CONNECT ack, reset TCP.
    WsAckReset,
    /// WebSocket: two CONNECT packets for `/` on one session, then hang up.
    WsDoubleConnect,
    /// WebSocket: CONNECT, DISCONNECT `41`, CONNECT on one session, then hang up.
    WsConnectDisconnectConnect,
    /// WebSocket: CONNECT, and as soon as the ack arrives leave gracefully (`41` + close frame).
    WsAckLeave,
    /// Long-polling: handshake, POST `40`, POST `41`, never poll again.
    PollConnectDisconnect,
    /// Long-polling: handshake, one POST carrying `40` and `41`, never poll again.
    PollConnectDisconnectBatched,
    /// Long-polling: handshake, POST `40`, then POST an Engine.IO close `1` (the session is dropped).
    PollConnectDrop,
    /// A client that joins and stays (held across rounds, answering pings).
    Join,
    /// A held client leaves gracefully.
    Leave,
    /// A held client leaves gracefully and joins again, on the step's node.
    Reconnect,
    /// A client that joins a room at connect (`room=` in the query) and stays (held).
    JoinRoom,
    /// A held client joins a room by event (leaving the one it is in first).
    RoomJoin,
    /// A held client leaves its room by event.
    RoomLeave,
    /// WebSocket with `room=` in the query: CONNECT, hang up TCP on the next tick.
    RoomConnectHangup,
    /// WebSocket: CONNECT, its ack, a `join` event, then hang up (FIN or reset) without its ack.
    RoomJoinHangup,
    /// WebSocket: CONNECT, its ack, 40 `join` / `leave` events back to back (past the rate
    /// limit), then hang up at once or read every ack and leave gracefully.
    RoomFlood,
    /// Invalid room names: in the handshake (must be refused with CONNECT_ERROR), then in
    /// `join` / `leave` events (must be refused in their acks); then hang up.
    RoomInvalid,
}

/// What the hunt knows about one [`Op`].
#[derive(Debug)]
pub struct OpInfo {
    /// The operation.
    pub op: Op,
    /// Its name on the command line and in reports.
    pub name: &'static str,
    /// Relative frequency in a round.
    pub weight: u32,
}

/// Every operation, in report order. Closing right after a CONNECT races the server's
/// connect handling, where counts have leaked before; those sequences weigh the most.
pub const OPS: &[OpInfo] = &[
    OpInfo { op: Op::WsConnectHangup, name: "ws_connect_hangup", weight: 12 },
    OpInfo { op: Op::WsConnectReset, name: "ws_connect_reset", weight: 12 },
    OpInfo { op: Op::WsConnectClose, name: "ws_connect_close", weight: 12 },
    OpInfo { op: Op::WsConnectCloseFrame, name: "ws_connect_close_frame", weight: 12 },
    OpInfo { op: Op::WsAckHangup, name: "ws_ack_hangup", weight: 5 },
    OpInfo { op: Op::WsAckReset, name: "ws_ack_reset", weight: 5 },
    OpInfo { op: Op::WsDoubleConnect, name: "ws_double_connect", weight: 5 },
    OpInfo { op: Op::WsConnectDisconnectConnect, name: "ws_connect_disconnect_connect", weight: 12 },
    OpInfo { op: Op::WsAckLeave, name: "ws_ack_leave", weight: 5 },
    OpInfo { op: Op::PollConnectDisconnect, name: "poll_connect_disconnect", weight: 5 },
    OpInfo { op: Op::PollConnectDisconnectBatched, name: "poll_connect_disconnect_batched", weight: 5 },
    OpInfo { op: Op::PollConnectDrop, name: "poll_connect_drop", weight: 8 },
    OpInfo { op: Op::Join, name: "join", weight: 4 },
    OpInfo { op: Op::Leave, name: "leave", weight: 4 },
    OpInfo { op: Op::Reconnect, name: "reconnect", weight: 4 },
    OpInfo { op: Op::JoinRoom, name: "join_room", weight: 3 },
    OpInfo { op: Op::RoomJoin, name: "room_join", weight: 6 },
    OpInfo { op: Op::RoomLeave, name: "room_leave", weight: 4 },
    OpInfo { op: Op::RoomConnectHangup, name: "room_connect_hangup", weight: 8 },
    OpInfo { op: Op::RoomJoinHangup, name: "room_join_hangup", weight: 8 },
    OpInfo { op: Op::RoomFlood, name: "room_flood", weight: 4 },
    OpInfo { op: Op::RoomInvalid, name: "room_invalid", weight: 3 },
];

impl Op {
    /// This operation's row of [`OPS`] (rows are in declaration order).
    pub fn info(self) -> &'static OpInfo {
        &OPS[self as usize]
    }

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Whether it works on the pool of held clients (and so changes the true counts).
    pub fn holds(self) -> bool {
        matches!(self, Op::Join | Op::Leave | Op::Reconnect | Op::JoinRoom | Op::RoomJoin | Op::RoomLeave)
    }

    /// Whether it adds a held client.
    pub fn adds(self) -> bool {
        matches!(self, Op::Join | Op::JoinRoom)
    }

    /// Whether it takes a held client out of the pool for its duration (to leave, or to work on it).
    pub fn takes(self) -> bool {
        matches!(self, Op::Leave | Op::Reconnect | Op::RoomJoin | Op::RoomLeave)
    }

    /// Every operation.
    pub fn all() -> Vec<Op> {
        OPS.iter().map(|info| info.op).collect()
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `--ops`: comma-separated operation names; the result is sorted and without repeats.
pub fn parse_list(spec: &str) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let Some(info) = OPS.iter().find(|info| info.name == name) else {
            let known: Vec<&str> = OPS.iter().map(|info| info.name).collect();
            return Err(format!("unknown operation {name:?} (known: {})", known.join(", ")));
        };
        ops.push(info.op);
    }
    ops.sort();
    ops.dedup();
    if ops.is_empty() {
        return Err("--ops names no operation".to_owned());
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_one_row_and_a_unique_name() {
        assert_eq!(OPS.len(), Op::RoomInvalid as usize + 1, "one row per variant");
        for (index, info) in OPS.iter().enumerate() {
            assert_eq!(info.op as usize, index, "{} is out of declaration order", info.name);
            assert_eq!(info.op.info().name, info.name);
            assert!(info.weight > 0);
            assert!(OPS[index + 1..].iter().all(|other| other.name != info.name && other.op != info.op));
        }
    }

    #[test]
    fn lists_parse_sorted_and_refuse_unknown_names() {
        assert_eq!(parse_list("leave, ws_ack_hangup,leave"), Ok(vec![Op::WsAckHangup, Op::Leave]));
        assert!(parse_list("ws_connect_hangup,teleport").is_err_and(|error| error.contains("teleport")));
        assert!(parse_list(" , ").is_err());
        assert_eq!(
            parse_list(&Op::all().iter().map(|op| op.name()).collect::<Vec<_>>().join(",")),
            Ok(Op::all())
        );
    }
}
