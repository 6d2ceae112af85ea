//! The HTTP routes beside Socket.IO: the page, the client bundle, health, presence, the rooms
//! API and its OpenAPI document, metrics.

mod error;
mod keys;
mod lean_head;
mod openapi;
mod rooms;
mod serve;
mod webhooks;

pub use self::keys::ApiKeys;
pub use self::lean_head::{LeanHead, LeanHeadLayer};
pub use self::serve::serve;
pub use self::webhooks::DeadLetters;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use rollcall_wire::PresenceDocument;

use crate::bundle::{self, ClientBundle};
use crate::metrics::Metrics;
use crate::presence::PresenceBackend;
use crate::readmodel::{ReadModel, Readiness};

const INDEX_HTML: &str = include_str!("../assets/index.html");
/// Largest body of `POST /api/rooms/counts` (1000 names of up to 256 bytes, JSON-escaped).
const MAX_COUNTS_BODY: usize = 1 << 20;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The coordinator's latest state and the live nodes.
    pub model: ReadModel,
    /// Set when shutdown begins: readiness fails and new handshakes are refused.
    pub draining: Arc<AtomicBool>,
    /// Refuse new sockets at this many.
    pub max_connections: usize,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// The socket.io-client bundle.
    pub bundle: ClientBundle,
    /// For the rooms API.
    pub backend: Arc<dyn PresenceBackend>,
    /// Keys the API's reads need (none: open).
    pub api_keys: ApiKeys,
    /// With keys set, whether `/api/presence` stays public.
    pub public_presence: bool,
    /// The dead-lettered webhook events.
    pub dead_letters: DeadLetters,
}

/// Every route but `/socket.io/` itself, which the caller mounts. Unknown paths and methods
/// answer with a JSON error like the API's own (404, and 405 with `Allow`).
pub fn routes(state: HttpState) -> Router {
    let bundle =
        Router::new().route("/socket.io/{file}", get(bundle::serve)).with_state(state.bundle.clone());
    let guard = axum::middleware::from_fn_with_state(state.api_keys.clone(), keys::require);
    let rooms = Router::new()
        .route("/api/rooms", get(rooms::list))
        .route(
            "/api/rooms/counts",
            get(rooms::one_named_counts)
                .post(rooms::many)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_COUNTS_BODY)),
        )
        .route("/api/rooms/{room}", get(rooms::one))
        .route("/api/rooms/{room}/members", get(rooms::members))
        .layer(guard.clone())
        .with_state(state.backend.clone());
    let dead = Router::new()
        .route("/api/webhooks/dead", get(webhooks::dead))
        .layer(guard.clone())
        .with_state(state.dead_letters.clone());
    // Rendered once for this node's settings; each answer shares the bytes.
    let document =
        axum::body::Bytes::from(openapi::document(state.api_keys.enabled(), state.public_presence));
    let openapi = get(move || async move {
        ([(header::CONTENT_TYPE, "application/json")], document.clone()).into_response()
    });
    let mut presence_route = Router::new().route("/api/presence", get(presence));
    if !state.public_presence {
        presence_route = presence_route.layer(guard);
    }
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(crate::dashboard::page))
        .route("/api/openapi.json", openapi)
        .route("/widget.js", get(crate::widget::script))
        .route("/widget.css", get(crate::widget::style))
        .merge(presence_route)
        .with_state(state)
        .merge(bundle)
        .merge(rooms)
        .merge(dead)
        // After every route: these apply to the routes registered before them.
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if state.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    match state.model.readiness() {
        Readiness::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response(),
        Readiness::Ready { degraded: false } => "ready".into_response(),
        Readiness::Ready { degraded: true } => {
            "ready (degraded: the backend cannot be reached)".into_response()
        }
    }
}

async fn presence(State(state): State<HttpState>) -> Json<PresenceDocument> {
    Json(state.model.presence())
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
        } else if state.model.local() >= state.max_connections {
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
