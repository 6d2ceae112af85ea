//! `/dashboard`: a live cluster view served by every node. The page talks to the node over
//! Socket.IO on its own namespace (`/dashboard`), so watching the cluster does not count as a
//! user: only namespace `/` is counted. With `api_keys` set, the namespace needs one of them
//! (`auth.key`; the page reads it from its URL fragment, `/dashboard#key=...`): its snapshots name
//! the busiest rooms.

use std::time::Duration;

use axum::response::Html;
use socketioxide::SocketIo;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use tokio_util::sync::CancellationToken;

use crate::http::ApiKeys;
use crate::readmodel::ReadModel;

/// The namespace dashboard pages connect to.
pub const NAMESPACE: &str = "/dashboard";
/// The event carrying one cluster snapshot (the `/api/presence` document plus a timestamp).
pub const EVENT: &str = "cluster";
/// How often connected dashboards get a snapshot.
pub const PERIOD: Duration = Duration::from_secs(1);

const DASHBOARD_HTML: &str = include_str!("assets/dashboard.html");

/// `GET /dashboard`.
pub async fn page() -> Html<&'static str> {
    Html(DASHBOARD_HTML)
}

/// One cluster snapshot: the `/api/presence` document, the busiest rooms this node follows, and
/// the time it was taken (ms).
fn snapshot(model: &ReadModel) -> serde_json::Value {
    let mut document = serde_json::to_value(model.presence()).unwrap_or_default();
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    document["at"] = serde_json::json!(u64::try_from(at.as_millis()).unwrap_or(u64::MAX));
    let rooms: Vec<serde_json::Value> = model
        .state()
        .top_rooms
        .iter()
        .flat_map(|rooms| rooms.iter())
        .map(|r| serde_json::json!({ "room": r.room.as_str(), "users": r.counts.users, "connections": r.counts.connections }))
        .collect();
    document["rooms"] = serde_json::Value::Array(rooms);
    document
}

/// Why a dashboard was refused.
#[derive(Debug)]
struct NeedsKey;

impl std::fmt::Display for NeedsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an API key is required: open /dashboard#key=<key>")
    }
}

/// Registers the namespace: a new dashboard gets a snapshot at once.
pub fn register(io: &SocketIo, model: ReadModel, keys: ApiKeys) {
    let check = move |TryData(auth): TryData<serde_json::Value>| {
        let key = auth.ok().and_then(|a| a.get("key").and_then(|k| k.as_str().map(str::to_owned)));
        let allowed = !keys.enabled() || key.is_some_and(|k| keys.accepts(k.as_bytes()));
        std::future::ready(if allowed { Ok(()) } else { Err(NeedsKey) })
    };
    let handler = move |socket: SocketRef| {
        let _ = socket.emit(EVENT, &snapshot(&model));
        std::future::ready(())
    };
    io.ns(NAMESPACE, handler.with(check));
}

/// Sends a snapshot to every dashboard each [`PERIOD`] until `stop` is cancelled.
pub async fn feed(io: SocketIo, model: ReadModel, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let watched = io.of(NAMESPACE).is_some_and(|dashboards| !dashboards.sockets().is_empty());
        if let (true, Some(dashboards)) = (watched, io.of(NAMESPACE)) {
            let _ = dashboards.emit(EVENT, &snapshot(&model)).await;
        }
    }
}
