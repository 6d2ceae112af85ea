//! One lean Socket.IO client: TCP (bound to a source address), WebSocket, Engine.IO open,
//! Socket.IO connect to `/`, then pongs and `refresh users` counting until told to leave.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::messages::{Target, now_us};
use super::protocol::{self, Packet, SocketPacket};

/// `last_value` of a client that has not seen a total yet.
pub const NO_VALUE: i64 = i64::MIN;
/// How long a leaving client waits for the server to close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// What one client shares with its worker while it lives: the last total it saw, when that
/// changed, and how many totals it received.
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
}

impl Default for ClientCell {
    fn default() -> Self {
        Self {
            connected: AtomicBool::new(false),
            last_value: AtomicI64::new(NO_VALUE),
            changed_at_us: AtomicU64::new(0),
            messages: AtomicU64::new(0),
        }
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
    /// Connect timeout.
    pub timeout: Duration,
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
    let error = tokio::select! {
        error = serve(&mut ws, &cell) => Some(error),
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
    let request = spec.target.ws_url.as_str();
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config()))
        .await
        .map_err(|error| ws_kind(&error))?;
    match next_text(&mut ws).await? {
        text if matches!(protocol::parse(&text), Ok(Packet::Open(_))) => {}
        _ => return Err("engineio_open".to_owned()),
    }
    send(&mut ws, protocol::CONNECT_MAIN).await?;
    loop {
        let text = next_text(&mut ws).await?;
        match protocol::parse(&text) {
            Ok(Packet::Message(SocketPacket::Connect { namespace: "/" })) => return Ok(ws),
            Ok(Packet::Message(SocketPacket::ConnectError(_))) => {
                return Err("socketio_connect_error".to_owned());
            }
            Ok(Packet::Ping) => send(&mut ws, protocol::PONG).await?,
            Ok(packet) => observe(&packet, cell),
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

async fn send(ws: &mut Ws, text: &'static str) -> Result<(), String> {
    ws.send(Message::text(text)).await.map_err(|error| ws_kind(&error))
}

/// Answers pings and records totals until the connection ends; returns why it ended.
async fn serve(ws: &mut Ws, cell: &ClientCell) -> String {
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => return "dropped_closed".to_owned(),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return format!("dropped_{}", ws_kind(&error)),
        };
        match protocol::parse(text.as_str()) {
            Ok(Packet::Ping) => {
                if let Err(kind) = send(ws, protocol::PONG).await {
                    return format!("dropped_{kind}");
                }
            }
            Ok(Packet::Close) => return "dropped_engineio_close".to_owned(),
            Ok(Packet::Message(SocketPacket::Disconnect { namespace: "/" })) => {
                return "dropped_server_disconnect".to_owned();
            }
            Ok(packet) => observe(&packet, cell),
            Err(_) => {}
        }
    }
}

/// Records a `refresh users` total.
fn observe(packet: &Packet<'_>, cell: &ClientCell) {
    let Some(total) = protocol::refresh_total(packet) else {
        return;
    };
    cell.messages.fetch_add(1, Ordering::Relaxed);
    if cell.last_value.swap(total, Ordering::AcqRel) != total {
        cell.changed_at_us.store(now_us(), Ordering::Release);
    }
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
