//! JSON lines spoken between the swarm parent and its worker processes (over the worker's
//! stdin and stdout), and the shared clock.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::histogram::Histogram;
use super::rooms::RoomPlan;

/// Microseconds since the Unix epoch: the one clock parent and workers share.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_micros() as u64).unwrap_or(0)
}

/// One node (or load balancer) the clients connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `ws://host:port/socket.io/?EIO=4&transport=websocket`.
    pub ws_url: String,
    /// The resolved address to open TCP connections to.
    pub addr: SocketAddr,
    /// `http://host:port/api/presence`.
    pub presence_url: String,
}

/// Everything a worker needs; the first line the parent writes to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// This worker's index (0-based).
    pub index: usize,
    /// Number of workers: client ids are `index + k * workers`.
    pub workers: usize,
    /// Targets, used round robin by client id.
    pub targets: Vec<Target>,
    /// Source addresses this worker binds its sockets to, round robin (empty: any).
    pub source_ips: Vec<IpAddr>,
    /// Give up on a connect after this long.
    pub connect_timeout_ms: u64,
    /// The worker exits by itself after this long, whatever happens.
    pub max_duration_ms: u64,
    /// The rooms its clients join, if any.
    pub rooms: Option<RoomPlan>,
    /// The HS256 secret its clients sign their tokens with, if they sign in.
    #[serde(default)]
    pub jwt_secret: Option<String>,
}

/// A parent-to-worker line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Start the worker (always first).
    Config(WorkerConfig),
    /// Open `count` more clients at `rate` per second; answered by `PhaseDone`.
    Connect {
        /// Clients to open.
        count: u64,
        /// Connects per second.
        rate: f64,
    },
    /// Close `count` clients, oldest first (all of them if `count` is larger); answered by
    /// `PhaseDone`.
    Disconnect {
        /// Clients to close.
        count: u64,
    },
    /// Close the oldest client and open a new one `rate` times per second for `duration_ms`;
    /// answered by `PhaseDone`.
    Churn {
        /// Reconnects per second.
        rate: f64,
        /// How long to churn.
        duration_ms: u64,
    },
    /// Move `rate` clients per second to another room (leave, then join) for `duration_ms`;
    /// answered by `PhaseDone` once every move got its acks (`ok`/`failed` count moves).
    Move {
        /// Moves per second.
        rate: f64,
        /// How long to move clients.
        duration_ms: u64,
    },
    /// How many connected clients last saw `truth`; answered by `Status`.
    Status {
        /// The true total (`None`: the nodes disagree, nobody matches).
        truth: Option<i64>,
    },
    /// What the clients of each room saw; answered by `RoomStatus`.
    RoomStatus,
    /// How many clients of these rooms do not show their truth; answered by `RoomStale`.
    RoomStale {
        /// `(room, true connections)`.
        truths: Vec<(u32, i64)>,
    },
    /// Send the final counters; answered by `Report`.
    Report,
}

/// The end of a connect, disconnect or churn phase in one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseDone {
    /// Connects that succeeded in this phase.
    pub ok: u64,
    /// Connects that failed in this phase.
    pub failed: u64,
    /// When the phase's first connect started (0: none).
    pub first_start_us: u64,
    /// When the phase's last successful connect finished (0: none).
    pub last_ok_us: u64,
    /// When this worker last changed the presence total (connect acked or disconnect sent).
    pub last_change_us: u64,
}

/// How many of a worker's connected clients agree with the true total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Clients connected now.
    pub connected: u64,
    /// Connected clients whose last seen total equals the truth.
    pub matching: u64,
    /// Connected clients that have not received any total yet.
    pub without_value: u64,
    /// Latest time one of the matching clients changed its value (0: none).
    pub latest_change_us: u64,
}

/// What one worker's clients of one room saw (rooms with clients, or whose count the worker
/// changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// Room index.
    pub room: u32,
    /// Connected clients in it.
    pub clients: u64,
    /// Of those, clients that got no `room users` for it yet.
    pub without_value: u64,
    /// Smallest and largest `room users` connections they show (meaningless when
    /// `without_value == clients`).
    pub min: i64,
    /// See `min`.
    pub max: i64,
    /// Latest time one of them changed its value (µs since the epoch; 0: none).
    pub latest_change_us: u64,
    /// When this worker last changed the room's count (µs since the epoch; 0: never).
    pub last_change_us: u64,
}

/// A worker's counters over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Connect latency (TCP connect to Socket.IO connect ack), microseconds.
    pub latency: Histogram,
    /// Connects started.
    pub attempted: u64,
    /// Connects that reached the Socket.IO connect ack.
    pub ok: u64,
    /// Connects that failed (kinds in `errors`).
    pub failed: u64,
    /// Failures by kind: connect failures, and `dropped_*` for clients dropped afterwards.
    pub errors: BTreeMap<String, u64>,
    /// Connected clients closed by the server or the network, not by the swarm.
    pub dropped: u64,
    /// Most clients connected at once.
    pub peak_connected: u64,
    /// When the first connect started (µs since the epoch; 0: none).
    pub first_start_us: u64,
    /// When the last successful connect finished (µs since the epoch; 0: none).
    pub last_ok_us: u64,
    /// `refresh users` messages received, over all clients.
    pub messages_total: u64,
    /// Most `refresh users` messages one client received.
    pub messages_max: u64,
    /// `room users` messages received, over all clients.
    pub room_messages_total: u64,
    /// Most `room users` messages one client received.
    pub room_messages_max: u64,
    /// Room moves started.
    pub moves_attempted: u64,
    /// Room moves that got both acks.
    pub moves_ok: u64,
    /// Room moves refused or cut short (kinds in `errors`, `move_*`).
    pub moves_failed: u64,
    /// Room move latency (first packet to last ack), microseconds.
    pub move_latency: Histogram,
}

/// A worker-to-parent line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// Live counters, a few times a second.
    Progress {
        /// Clients connected now.
        connected: u64,
        /// Connects started so far.
        attempted: u64,
        /// Connects failed so far.
        failed: u64,
    },
    /// Answer to `Connect`, `Disconnect` and `Churn`.
    PhaseDone(PhaseDone),
    /// Answer to `Status`.
    Status(Status),
    /// Answer to `Report`.
    Report(WorkerReport),
    /// Answer to `RoomStatus`.
    RoomStatus {
        /// One per room, in room order.
        rooms: Vec<RoomSummary>,
    },
    /// Answer to `RoomStale`.
    RoomStale {
        /// Clients of those rooms whose last value is not the truth.
        stale: u64,
        /// Of those, clients that never got a value.
        without_value: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_json_lines() {
        let mut report = WorkerReport { ok: 2, ..WorkerReport::default() };
        report.latency.record(1_500);
        report.latency.record(250_000);
        report.errors.insert("tcp_refused".to_owned(), 1);
        let line = serde_json::to_string(&Event::Report(report.clone())).expect("serializes");
        assert!(!line.contains('\n'));
        let Event::Report(back) = serde_json::from_str(&line).expect("parses") else {
            panic!("not a report: {line}");
        };
        assert_eq!(back, report);
        let status =
            Event::Status(Status { connected: 3, matching: 2, without_value: 1, latest_change_us: 9 });
        let line = serde_json::to_string(&status).expect("serializes");
        assert!(matches!(serde_json::from_str(&line), Ok(Event::Status(Status { matching: 2, .. }))));
    }

    #[test]
    fn commands_round_trip_as_json_lines() {
        let line = serde_json::to_string(&Command::Status { truth: None }).expect("serializes");
        assert_eq!(line, r#"{"cmd":"status","truth":null}"#);
        let churn: Command =
            serde_json::from_str(r#"{"cmd":"churn","rate":2.5,"duration_ms":10}"#).expect("parses");
        assert!(matches!(churn, Command::Churn { duration_ms: 10, .. }));
        let stale = serde_json::to_string(&Command::RoomStale { truths: vec![(3, 40)] }).expect("serializes");
        assert_eq!(stale, r#"{"cmd":"room_stale","truths":[[3,40]]}"#);
        let summary = RoomSummary {
            room: 3,
            clients: 2,
            without_value: 0,
            min: 40,
            max: 41,
            latest_change_us: 9,
            last_change_us: 8,
        };
        let line = serde_json::to_string(&Event::RoomStatus { rooms: vec![summary] }).expect("serializes");
        let Ok(Event::RoomStatus { rooms }) = serde_json::from_str(&line) else { panic!("{line}") };
        assert_eq!(rooms, vec![summary]);
    }
}
