//! The raw WebSocket sequences: a bare Engine.IO session driven packet by packet, so the hunt
//! can hang up at the worst moments (right after a CONNECT, right after its ack), with a FIN or
//! a TCP reset, or send what a well-behaved client never sends (two CONNECTs, CONNECT after
//! DISCONNECT), and room sequences ([`rooms`]). Every sequence ends with the connection closed:
//! its true count is zero, in every room too.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::ops::Op;
use super::raw_rooms;
use crate::client::{self, Ws};
use crate::messages::Target;
use crate::protocol::{self, Packet, SocketPacket};
use crate::rooms::RoomPlan;

/// The Engine.IO packet that closes the session.
const ENGINE_CLOSE: &str = "1";
/// How long a graceful leave waits for the server to close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// One bare Engine.IO session over WebSocket, past the open packet.
pub(super) struct Session {
    pub(super) ws: Ws,
}

impl Session {
    /// TCP (from `source`), WebSocket upgrade, Engine.IO open packet.
    pub(super) async fn open(target: &Target, source: Option<IpAddr>) -> Result<Self, String> {
        Self::open_url(target, source, &target.ws_url).await
    }

    /// The same to `url` (the target's WebSocket URL with more in its query).
    pub(super) async fn open_url(target: &Target, source: Option<IpAddr>, url: &str) -> Result<Self, String> {
        let tcp = client::open_tcp(target.addr, source).await?;
        let _ = tcp.set_nodelay(true);
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(client::ws_config()))
            .await
            .map_err(|error| client::ws_kind(&error))?;
        match protocol::parse(&client::next_text(&mut ws).await?) {
            Ok(Packet::Open(_)) => Ok(Self { ws }),
            _ => Err("engineio_open".to_owned()),
        }
    }

    /// Writes `packets` back to back and flushes once (one TCP segment when they fit).
    pub(super) async fn send(&mut self, packets: &[&str]) -> Result<(), String> {
        for packet in packets {
            self.ws.feed(Message::text(*packet)).await.map_err(|error| client::ws_kind(&error))?;
        }
        self.ws.flush().await.map_err(|error| client::ws_kind(&error))
    }

    /// Reads until the CONNECT ack for `/`, answering pings.
    pub(super) async fn until_ack(&mut self) -> Result<(), String> {
        loop {
            let text = client::next_text(&mut self.ws).await?;
            match protocol::parse(&text) {
                Ok(Packet::Message(SocketPacket::Connect { namespace: "/" })) => return Ok(()),
                Ok(Packet::Message(SocketPacket::ConnectError(_))) => {
                    return Err("socketio_connect_error".to_owned());
                }
                Ok(Packet::Close) => return Err("closed_early".to_owned()),
                Ok(Packet::Ping) => self.send(&[protocol::PONG]).await?,
                Ok(_) => {}
                Err(_) => return Err("protocol".to_owned()),
            }
        }
    }

    /// Drops the connection without a close frame: the kernel sends a FIN (or a reset when
    /// unread data is pending).
    pub(super) fn hang_up(self) {
        drop(self.ws);
    }

    /// Drops the connection with a TCP reset (SO_LINGER 0).
    pub(super) fn reset(self) -> Result<(), String> {
        self.ws.get_ref().set_zero_linger().map_err(|error| client::io_kind("linger", &error))?;
        drop(self.ws);
        Ok(())
    }

    /// Leaves `/` and closes the WebSocket as a polite client does.
    pub(super) async fn leave(mut self) {
        let _ = self.send(&[protocol::DISCONNECT_MAIN]).await;
        let _ = self.ws.close(None).await;
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
    }
}

/// Runs one WebSocket sequence (`rooms` and `pick` choose rooms); the error is a failure kind.
/// Callers bound it in time.
pub async fn run(
    op: Op,
    target: &Target,
    source: Option<IpAddr>,
    room_plan: &RoomPlan,
    pick: u32,
) -> Result<(), String> {
    use protocol::{CONNECT_MAIN as CONNECT, DISCONNECT_MAIN as DISCONNECT};
    if matches!(op, Op::RoomConnectHangup | Op::RoomJoinHangup | Op::RoomFlood | Op::RoomInvalid) {
        return raw_rooms::run(op, target, source, room_plan, pick).await;
    }
    let mut session = Session::open(target, source).await?;
    match op {
        Op::WsConnectHangup => {
            session.send(&[CONNECT]).await?;
            tokio::task::yield_now().await;
            session.hang_up();
        }
        Op::WsConnectReset => {
            session.send(&[CONNECT]).await?;
            tokio::task::yield_now().await;
            session.reset()?;
        }
        Op::WsConnectClose => {
            session.send(&[CONNECT, ENGINE_CLOSE]).await?;
            session.hang_up();
        }
        Op::WsConnectCloseFrame => {
            session.ws.feed(Message::text(CONNECT)).await.map_err(|error| client::ws_kind(&error))?;
            session.ws.close(None).await.map_err(|error| client::ws_kind(&error))?;
            session.hang_up();
        }
        Op::WsAckHangup => {
            session.send(&[CONNECT]).await?;
            session.until_ack().await?;
            session.hang_up();
        }
        Op::WsAckReset => {
            session.send(&[CONNECT]).await?;
            session.until_ack().await?;
            session.reset()?;
        }
        Op::WsDoubleConnect => {
            session.send(&[CONNECT, CONNECT]).await?;
            session.until_ack().await?;
            session.hang_up();
        }
        Op::WsConnectDisconnectConnect => {
            session.send(&[CONNECT, DISCONNECT, CONNECT]).await?;
            tokio::task::yield_now().await;
            session.hang_up();
        }
        Op::WsAckLeave => {
            session.send(&[CONNECT]).await?;
            session.until_ack().await?;
            session.leave().await;
        }
        other => return Err(format!("{other} is not a WebSocket sequence")),
    }
    Ok(())
}
