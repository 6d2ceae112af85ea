//! One lean Socket.IO client: TCP (bound to a source address), WebSocket, Engine.IO open,
//! Socket.IO connect to `/` (in a room, with `room=` in the query), then pongs, `refresh users`
//! and `room users` counting, and room moves when its worker asks, until told to leave.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

mod session;

use self::session::{Session, observe};
use super::messages::Target;
use super::mover::MoveOutcome;
use super::protocol::{self, Packet, SocketPacket};
use super::rooms::{NO_ROOM, RoomPlan};

/// `last_value` of a client that has not seen a total yet.
pub const NO_VALUE: i64 = i64::MIN;
/// How long a leaving client waits for the server to close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// What one client shares with its worker while it lives: the last total it saw, when that
/// changed, and how many totals it received; the same for its room, and the room its worker
/// wants it in.
#[derive(Debug)]
pub struct ClientCell {
    /// Whether the Socket.IO connect was acknowledged and the client has not left.
    pub connected: AtomicBool,
    /// The last `refresh users` total, or [`NO_VALUE`].
    pub last_value: AtomicI64,
    /// When `last_value` last changed (µs since the epoch).
    pub changed_at_us: AtomicU64,
    /// `refresh users` messages received.
    pub messages: AtomicU64,
    /// The room it is in, or is joining ([`NO_ROOM`]: none).
    pub room: AtomicU32,
    /// The last `room users` connections of `room`, or [`NO_VALUE`].
    pub room_value: AtomicI64,
    /// When `room_value` last changed (µs since the epoch).
    pub room_changed_at_us: AtomicU64,
    /// `room users` messages received (any room).
    pub room_messages: AtomicU32,
    /// The room its worker wants it in; a difference from `room` is a move to make.
    pub wanted_room: AtomicU32,
    /// Wakes the client when `wanted_room` changed.
    pub wake: Notify,
}

impl Default for ClientCell {
    fn default() -> Self {
        Self {
            connected: AtomicBool::new(false),
            last_value: AtomicI64::new(NO_VALUE),
            changed_at_us: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            room: AtomicU32::new(NO_ROOM),
            room_value: AtomicI64::new(NO_VALUE),
            room_changed_at_us: AtomicU64::new(0),
            room_messages: AtomicU32::new(0),
            wanted_room: AtomicU32::new(NO_ROOM),
            wake: Notify::new(),
        }
    }
}

impl ClientCell {
    /// A cell for a client that joins `room` at connect.
    pub fn in_room(room: u32) -> Self {
        let cell = ClientCell::default();
        cell.room.store(room, Ordering::Relaxed);
        cell.wanted_room.store(room, Ordering::Relaxed);
        cell
    }

    /// Asks the client to move to `room` (it leaves its room, then joins that one).
    pub fn move_to(&self, room: u32) {
        self.wanted_room.store(room, Ordering::Release);
        self.wake.notify_one();
    }
}

/// What a client tells its worker.
#[derive(Debug)]
pub enum ClientEvent {
    /// Connected to `/` after `latency_us`.
    Connected {
        /// The worker's slot of this client.
        slot: usize,
        /// TCP connect start to Socket.IO connect ack.
        latency_us: u64,
    },
    /// A room move finished (see [`ClientCell::move_to`]).
    Moved {
        /// The worker's slot of this client.
        slot: usize,
        /// What it did.
        outcome: MoveOutcome,
    },
    /// The client ended: `error` is `None` when it left because it was told to.
    Ended {
        /// The worker's slot of this client.
        slot: usize,
        /// Whether the Socket.IO connect had been acknowledged.
        was_connected: bool,
        /// Failure kind, if any.
        error: Option<String>,
    },
}

/// How to open one client.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Where to connect.
    pub target: Arc<Target>,
    /// Source address to bind to, if any.
    pub source: Option<IpAddr>,
    /// Connect timeout, and how long a `join` / `leave` may wait for its ack.
    pub timeout: Duration,
    /// The run's rooms (the cell's `room` is an index into them), if it has any.
    pub rooms: Option<Arc<RoomPlan>>,
    /// The token it signs in with (the handshake's `auth.token`), if any.
    pub token: Option<String>,
}

/// Small buffers: a presence client reads tiny text frames and writes a few bytes.
pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Runs one client until `stop` fires (or the connection ends), reporting to `events`.
pub async fn run(
    spec: ClientSpec,
    slot: usize,
    cell: Arc<ClientCell>,
    mut stop: oneshot::Receiver<()>,
    events: mpsc::UnboundedSender<ClientEvent>,
) {
    let started = Instant::now();
    // Boxed: the handshake's large state is freed once connected, keeping idle clients small.
    let connecting = Box::pin(tokio::time::timeout(spec.timeout, connect(&spec, &cell)));
    let outcome = tokio::select! {
        result = connecting => result.unwrap_or_else(|_| Err("timeout".to_owned())),
        _ = &mut stop => Err("cancelled".to_owned()),
    };
    let mut ws = match outcome {
        Ok(ws) => ws,
        Err(kind) => {
            let error = Some(kind);
            let _ = events.send(ClientEvent::Ended { slot, was_connected: false, error });
            return;
        }
    };
    let latency_us = started.elapsed().as_micros() as u64;
    cell.connected.store(true, Ordering::Release);
    let _ = events.send(ClientEvent::Connected { slot, latency_us });
    let session = Session { spec: &spec, cell: &cell, slot, events: &events };
    let error = tokio::select! {
        error = session.serve(&mut ws) => Some(error),
        _ = &mut stop => None,
    };
    cell.connected.store(false, Ordering::Release);
    if error.is_none() {
        Box::pin(leave(&mut ws)).await;
    }
    let _ = events.send(ClientEvent::Ended { slot, was_connected: true, error });
}

/// TCP, WebSocket and the Engine.IO / Socket.IO handshakes; the error is a failure kind.
async fn connect(spec: &ClientSpec, cell: &ClientCell) -> Result<Ws, String> {
    let tcp = open_tcp(spec.target.addr, spec.source).await?;
    let _ = tcp.set_nodelay(true);
    let room = cell.room.load(Ordering::Acquire);
    let request = match &spec.rooms {
        Some(plan) if room != NO_ROOM => with_room(&spec.target.ws_url, &plan.name(room)),
        _ => spec.target.ws_url.clone(),
    };
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config()))
        .await
        .map_err(|error| ws_kind(&error))?;
    match next_text(&mut ws).await? {
        text if matches!(protocol::parse(&text), Ok(Packet::Open(_))) => {}
        _ => return Err("engineio_open".to_owned()),
    }
    match &spec.token {
        Some(token) => ws
            .send(Message::text(protocol::connect_with_token(token)))
            .await
            .map_err(|error| ws_kind(&error))?,
        None => send(&mut ws, protocol::CONNECT_MAIN).await?,
    }
    loop {
        let text = next_text(&mut ws).await?;
        match protocol::parse(&text) {
            Ok(Packet::Message(SocketPacket::Connect { namespace: "/" })) => return Ok(ws),
            Ok(Packet::Message(SocketPacket::ConnectError(_))) => {
                return Err("socketio_connect_error".to_owned());
            }
            Ok(Packet::Ping) => send(&mut ws, protocol::PONG).await?,
            Ok(packet) => observe(&packet, cell, spec.rooms.as_deref()),
            Err(_) => return Err("protocol".to_owned()),
        }
    }
}

/// Opens a TCP connection, bound to `source` first when it is of the same family.
pub(crate) async fn open_tcp(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, String> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
        .map_err(|error| io_kind("socket", &error))?;
    if let Some(source) = source.filter(|source| source.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(source, 0)).map_err(|error| io_kind("bind", &error))?;
    }
    socket.connect(addr).await.map_err(|error| io_kind("tcp", &error))
}

/// Reads until a text frame arrives; the error is a failure kind.
pub(crate) async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => return Err("closed_early".to_owned()),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(ws_kind(&error)),
        }
    }
}

pub(crate) async fn send(ws: &mut Ws, text: &'static str) -> Result<(), String> {
    ws.send(Message::text(text)).await.map_err(|error| ws_kind(&error))
}

/// `url` with `&room=<name>` (percent-encoded) appended.
pub(crate) fn with_room(url: &str, room: &str) -> String {
    let mut out = String::with_capacity(url.len() + room.len() * 3 + 6);
    out.push_str(url);
    out.push_str("&room=");
    for byte in room.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Leaves `/`, closes the WebSocket and waits briefly for the server's close.
async fn leave(ws: &mut Ws) {
    let _ = ws.send(Message::text(protocol::DISCONNECT_MAIN)).await;
    let _ = ws.close(None).await;
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
}

/// A short, stable name for an I/O failure.
pub(crate) fn io_kind(stage: &str, error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let kind = match error.kind() {
        ErrorKind::ConnectionRefused => "refused",
        ErrorKind::ConnectionReset => "reset",
        ErrorKind::ConnectionAborted => "aborted",
        ErrorKind::TimedOut => "timeout",
        ErrorKind::AddrInUse => "addr_in_use",
        ErrorKind::AddrNotAvailable => "addr_not_available",
        ErrorKind::BrokenPipe => "broken_pipe",
        _ if error.raw_os_error() == Some(24) => "too_many_open_files",
        _ => "other",
    };
    format!("{stage}_{kind}")
}

/// A short, stable name for a WebSocket failure.
pub(crate) fn ws_kind(error: &WsError) -> String {
    match error {
        WsError::Io(error) => io_kind("io", error),
        WsError::Http(response) => format!("ws_http_{}", response.status().as_u16()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => "closed".to_owned(),
        WsError::Protocol(_) => "ws_protocol".to_owned(),
        _ => "ws_other".to_owned(),
    }
}
