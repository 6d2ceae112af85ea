//! The official client's default start: Engine.IO over HTTP long-polling (open, CONNECT by
//! `POST`, polls until the CONNECT ack), then the upgrade to WebSocket on a second connection
//! (`2probe` / `3probe` / `5`). The polling connection is closed once the upgrade is done, as a
//! browser does with an idle connection. Plain HTTP/1.1 over the client's own TCP socket, so it
//! is bound to the client's source address like the WebSocket.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::session::observe;
use super::{ClientCell, ClientSpec, Ws, next_text, open_tcp, send, ws_config, ws_kind};
use crate::protocol::{self, Packet, SocketPacket};

/// Separates Engine.IO v4 packets inside one polling payload.
const SEPARATOR: char = '\u{1e}';
/// Polls before giving up on the CONNECT ack (the caller's timeout bounds the time).
const MAX_POLLS: usize = 64;
/// A polling response larger than this is not from a presence node.
const MAX_BODY: usize = 1 << 20;

/// One keep-alive HTTP/1.1 connection to the node.
struct Http {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Http {
    /// Sends one request and reads the response body; the error is a failure kind.
    async fn request(&mut self, method: &str, path: &str, body: &str) -> Result<String, String> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\n\
             Content-Length: {}\r\nAccept: */*\r\n\r\n",
            self.host,
            body.len()
        );
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes()).await.map_err(|e| super::io_kind("poll", &e))?;
        stream.write_all(body.as_bytes()).await.map_err(|e| super::io_kind("poll", &e))?;
        self.response().await
    }

    async fn response(&mut self) -> Result<String, String> {
        let status = self.line().await?;
        let code = status.split(' ').nth(1).unwrap_or_default().to_owned();
        let (mut length, mut chunked) = (None, false);
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
        let body = if chunked { self.chunked().await? } else { self.exact(length.unwrap_or(0)).await? };
        if code != "200" {
            return Err(format!("poll_http_{code}"));
        }
        String::from_utf8(body).map_err(|_| "poll_protocol".to_owned())
    }

    async fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.stream.read_line(&mut line).await {
            Ok(0) => Err("poll_closed".to_owned()),
            Ok(_) if line.len() > MAX_BODY => Err("poll_protocol".to_owned()),
            Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_owned()),
            Err(error) => Err(super::io_kind("poll", &error)),
        }
    }

    async fn exact(&mut self, length: usize) -> Result<Vec<u8>, String> {
        if length > MAX_BODY {
            return Err("poll_protocol".to_owned());
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.map_err(|e| super::io_kind("poll", &e))?;
        Ok(body)
    }

    async fn chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let size = self.line().await?;
            let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
                .map_err(|_| "poll_protocol".to_owned())?;
            if size == 0 {
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err("poll_protocol".to_owned());
            }
            body.extend(self.exact(size).await?);
            self.line().await?;
        }
    }
}

/// `ws://host/path?query` split into the host and the polling request's target.
fn polling_parts(ws_url: &str) -> (String, String) {
    let rest = ws_url.strip_prefix("ws://").unwrap_or(ws_url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    (host.to_owned(), format!("/{}", path.replacen("transport=websocket", "transport=polling", 1)))
}

/// Opens the session by polling, connects to `/`, upgrades to WebSocket; returns the upgraded
/// WebSocket. `request` is the client's WebSocket URL (with its room, if any).
pub(super) async fn connect(spec: &ClientSpec, cell: &ClientCell, request: &str) -> Result<Ws, String> {
    let tcp = open_tcp(spec.target.addr, spec.source).await?;
    let _ = tcp.set_nodelay(true);
    let (host, path) = polling_parts(request);
    let mut http = Http { stream: BufReader::with_capacity(1024, tcp), host };
    let open = http.request("GET", &path, "").await?;
    let sid = match protocol::parse(open.split(SEPARATOR).next().unwrap_or_default()) {
        Ok(Packet::Open(open)) => open.sid,
        _ => return Err("engineio_open".to_owned()),
    };
    let session = format!("{path}&sid={sid}");
    if http.request("POST", &session, protocol::CONNECT_MAIN).await? != "ok" {
        return Err("poll_protocol".to_owned());
    }
    let mut connected = false;
    for _ in 0..MAX_POLLS {
        let payload = http.request("GET", &session, "").await?;
        for text in payload.split(SEPARATOR) {
            match protocol::parse(text) {
                Ok(Packet::Message(SocketPacket::Connect { namespace: "/" })) => connected = true,
                Ok(Packet::Message(SocketPacket::ConnectError(_))) => {
                    return Err("socketio_connect_error".to_owned());
                }
                Ok(Packet::Ping) => {
                    http.request("POST", &session, protocol::PONG).await?;
                }
                Ok(Packet::Close) => return Err("closed_early".to_owned()),
                Ok(packet) => observe(&packet, cell, spec.rooms.as_deref()),
                Err(_) => return Err("protocol".to_owned()),
            }
        }
        if connected {
            break;
        }
    }
    if !connected {
        return Err("poll_no_connect".to_owned());
    }
    let ws = upgrade(spec, &format!("{request}&sid={sid}")).await?;
    drop(http);
    Ok(ws)
}

/// The WebSocket half: probe, then upgrade.
async fn upgrade(spec: &ClientSpec, url: &str) -> Result<Ws, String> {
    let tcp = open_tcp(spec.target.addr, spec.source).await?;
    let _ = tcp.set_nodelay(true);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config()))
        .await
        .map_err(|error| ws_kind(&error))?;
    send(&mut ws, "2probe").await?;
    loop {
        match next_text(&mut ws).await?.as_str() {
            "3probe" => break,
            // The noop that flushes a pending poll may come first.
            "6" => {}
            _ => return Err("upgrade_protocol".to_owned()),
        }
    }
    send(&mut ws, "5").await?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_polling_request_follows_the_websocket_url() {
        let (host, path) =
            polling_parts("ws://127.0.0.1:3001/app/socket.io/?EIO=4&transport=websocket&room=a");
        assert_eq!(host, "127.0.0.1:3001");
        assert_eq!(path, "/app/socket.io/?EIO=4&transport=polling&room=a");
    }
}
