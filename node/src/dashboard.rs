//! `/dashboard`: a live cluster view served by every node. The page talks to the node over
//! Socket.IO on its own namespace (`/dashboard`), so watching the cluster does not count as a
//! user: only namespace `/` is counted.

use std::sync::Arc;
use std::time::Duration;

use axum::response::Html;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::coordinator::View;
use crate::http::presence_document;
use crate::presence::PresenceBackend;

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

/// What the feed needs to build a snapshot.
#[derive(Clone)]
pub struct Source {
    /// This node's id.
    pub node_id: Arc<str>,
    /// The coordinator's state.
    pub view: watch::Receiver<View>,
    /// For the per-node view.
    pub backend: Arc<dyn PresenceBackend>,
}

impl Source {
    async fn snapshot(&self) -> serde_json::Value {
        let view = *self.view.borrow();
        let mut document = presence_document(&self.node_id, view, self.backend.as_ref()).await;
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        document["at"] = serde_json::json!(u64::try_from(at.as_millis()).unwrap_or(u64::MAX));
        document
    }
}

/// Registers the namespace: a new dashboard gets a snapshot at once.
pub fn register(io: &SocketIo, source: Source) {
    io.ns(NAMESPACE, move |socket: SocketRef| {
        let source = source.clone();
        async move {
            let _ = socket.emit(EVENT, &source.snapshot().await);
        }
    });
}

/// Sends a snapshot to every dashboard each [`PERIOD`] until `stop` is cancelled.
pub async fn feed(io: SocketIo, source: Source, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let watched = io.of(NAMESPACE).is_some_and(|dashboards| !dashboards.sockets().is_empty());
        if let (true, Some(dashboards)) = (watched, io.of(NAMESPACE)) {
            let _ = dashboards.emit(EVENT, &source.snapshot().await).await;
        }
    }
}
