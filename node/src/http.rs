//! The HTTP routes beside Socket.IO: the page, the client bundle, health, presence, metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::watch;

use crate::bundle::{self, ClientBundle};
use crate::coordinator::View;
use crate::metrics::Metrics;
use crate::presence::PresenceBackend;

const INDEX_HTML: &str = include_str!("assets/index.html");

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// This node's id.
    pub node_id: Arc<str>,
    /// The coordinator's latest state.
    pub view: watch::Receiver<View>,
    /// Set when shutdown begins: readiness fails and new handshakes are refused.
    pub draining: Arc<AtomicBool>,
    /// Sockets currently connected to this node (kept by the Socket.IO glue).
    pub open_sockets: Arc<AtomicUsize>,
    /// Refuse new sockets at this many.
    pub max_connections: usize,
    /// The count's backend, for the cluster view.
    pub backend: Arc<dyn PresenceBackend>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// The socket.io-client bundle.
    pub bundle: ClientBundle,
}

/// Every route but `/socket.io/` itself, which the caller mounts.
pub fn routes(state: HttpState) -> Router {
    let bundle =
        Router::new().route("/socket.io/{file}", get(bundle::serve)).with_state(state.bundle.clone());
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/presence", get(presence))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(crate::dashboard::page))
        .with_state(state)
        .merge(bundle)
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if state.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else if !state.view.borrow().started {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    } else {
        "ready".into_response()
    }
}

async fn presence(State(state): State<HttpState>) -> Json<serde_json::Value> {
    let view = *state.view.borrow();
    Json(presence_document(&state.node_id, view, state.backend.as_ref()).await)
}

/// The `/api/presence` document: this node's view plus the live nodes read from the backend
/// (`null` when the backend cannot be reached).
pub async fn presence_document(
    node_id: &str,
    view: View,
    backend: &dyn PresenceBackend,
) -> serde_json::Value {
    let nodes = backend.nodes().await.map_or(serde_json::Value::Null, |nodes| json!(nodes));
    json!({
        "users": view.users,
        "node": node_id,
        "local": view.local,
        "mode": backend.mode(),
        "degraded": view.degraded,
        "nodes": nodes,
    })
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// Refuses new Engine.IO handshakes (requests without a `sid`) past `max_connections` or
/// while draining, with a 503 the client retries elsewhere. Running sessions are untouched.
pub async fn admission(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let uri = request.uri();
    let is_handshake = uri.path() == "/socket.io/" && !uri.query().unwrap_or_default().contains("sid=");
    if is_handshake {
        let reason = if state.draining.load(Ordering::Relaxed) {
            Some("draining")
        } else if state.open_sockets.load(Ordering::Relaxed) >= state.max_connections {
            Some("max_connections")
        } else {
            None
        };
        if let Some(reason) = reason {
            state.metrics.refuse(reason);
            return (StatusCode::SERVICE_UNAVAILABLE, reason).into_response();
        }
    }
    next.run(request).await
}
