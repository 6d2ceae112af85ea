//! The long-polling sequences: an Engine.IO session over plain HTTP requests that CONNECTs and
//! then leaves in one of three ways, and never polls again. Each ends with the socket on `/`
//! gone (DISCONNECT processed, or the whole session closed), so its true count is zero.

use super::ops::Op;
use crate::messages::Target;
use crate::protocol::{self, Packet};

/// Separates Engine.IO v4 packets inside one polling payload.
const SEPARATOR: char = '\u{1e}';
/// The Engine.IO packet that closes the session.
const ENGINE_CLOSE: &str = "1";

/// The polling URL of a target: its WebSocket URL with `transport=polling` over HTTP.
pub fn polling_url(target: &Target) -> String {
    let http = target.ws_url.replacen("ws://", "http://", 1);
    http.replacen("transport=websocket", "transport=polling", 1)
}

/// Runs one polling sequence against `url` (from [`polling_url`]); the error is a failure kind.
/// The HTTP client carries the time bound.
pub async fn run(op: Op, http: &reqwest::Client, url: &str) -> Result<(), String> {
    let sid = handshake(http, url).await?;
    let session = format!("{url}&sid={sid}");
    let connect = protocol::CONNECT_MAIN;
    let disconnect = protocol::DISCONNECT_MAIN;
    match op {
        Op::PollConnectDisconnect => {
            post(http, &session, connect.to_owned()).await?;
            post(http, &session, disconnect.to_owned()).await
        }
        Op::PollConnectDisconnectBatched => {
            post(http, &session, format!("{connect}{SEPARATOR}{disconnect}")).await
        }
        Op::PollConnectDrop => {
            post(http, &session, connect.to_owned()).await?;
            post(http, &session, ENGINE_CLOSE.to_owned()).await
        }
        other => Err(format!("{other} is not a polling sequence")),
    }
}

/// `GET` without a sid: the open packet's session id.
async fn handshake(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = http.get(url).send().await.map_err(|error| request_kind(&error))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("poll_http_{}", status.as_u16()));
    }
    let body = response.text().await.map_err(|error| request_kind(&error))?;
    let first = body.split(SEPARATOR).next().unwrap_or_default();
    match protocol::parse(first) {
        Ok(Packet::Open(open)) => Ok(open.sid),
        _ => Err("poll_open".to_owned()),
    }
}

/// `POST` one payload to the session.
async fn post(http: &reqwest::Client, session: &str, payload: String) -> Result<(), String> {
    let response = http
        .post(session)
        .header(reqwest::header::CONTENT_TYPE, "text/plain;charset=UTF-8")
        .body(payload)
        .send()
        .await
        .map_err(|error| request_kind(&error))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("poll_http_{}", status.as_u16()));
    }
    Ok(())
}

/// A short, stable name for a failed request.
fn request_kind(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "poll_timeout".to_owned()
    } else if error.is_connect() {
        "poll_connect".to_owned()
    } else {
        "poll_request".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_polling_url_follows_the_websocket_url() {
        let target = Target {
            ws_url: "ws://127.0.0.1:3001/app/socket.io/?EIO=4&transport=websocket".to_owned(),
            addr: "127.0.0.1:3001".parse().expect("address"),
            presence_url: "http://127.0.0.1:3001/app/api/presence".to_owned(),
        };
        assert_eq!(polling_url(&target), "http://127.0.0.1:3001/app/socket.io/?EIO=4&transport=polling");
    }
}
