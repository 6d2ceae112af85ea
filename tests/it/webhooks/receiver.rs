//! A real HTTP receiver for webhooks, in the test process: it checks every signature, records
//! every event, and can be told to fail, to be slow, or to stop listening.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use rollcall_node::webhooks::signature;
use serde_json::Value;
use tokio::task::JoinHandle;

/// The secret the nodes in these tests sign with.
pub const SECRET: &str = "a-webhook-secret-for-tests";

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200.
    Ok,
    /// 500.
    Fail,
    /// 200 after this long.
    Slow(Duration),
}

#[derive(Default)]
struct Inner {
    mode: Option<Mode>,
    events: Vec<Value>,
    posts: usize,
    bad_signatures: usize,
}

/// A receiver on a loopback port.
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    /// Its port.
    pub port: u16,
    server: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts listening on a free port, answering 200.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let inner = Arc::new(Mutex::new(Inner { mode: Some(Mode::Ok), ..Inner::default() }));
        let server = Some(serve(listener, inner.clone()));
        Self { inner, port, server }
    }

    /// `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// From now on, answer this way.
    pub fn set_mode(&self, mode: Mode) {
        self.inner.lock().expect("lock").mode = Some(mode);
    }

    /// Stops listening (connections are refused).
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        let listener =
            tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.expect("rebind receiver");
        self.server = Some(serve(listener, self.inner.clone()));
    }

    /// Every event accepted (2xx answered), in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.inner.lock().expect("lock").events.clone()
    }

    /// Requests received (any answer).
    pub fn posts(&self) -> usize {
        self.inner.lock().expect("lock").posts
    }

    /// Requests whose signature did not verify.
    pub fn bad_signatures(&self) -> usize {
        self.inner.lock().expect("lock").bad_signatures
    }

    /// Events of `kind` in `room` (and for `user`, if given).
    pub fn count(&self, kind: &str, room: &str, user: Option<&str>) -> usize {
        self.events()
            .iter()
            .filter(|e| e["type"] == kind && e["room"] == room && user.is_none_or(|u| e["user"] == u))
            .count()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: tokio::net::TcpListener, inner: Arc<Mutex<Inner>>) -> JoinHandle<()> {
    let app = Router::new().route("/hook", post(hook)).with_state(inner);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

async fn hook(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = headers.get(signature::HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mode = {
        let mut inner = inner.lock().expect("lock");
        inner.posts += 1;
        if !signature::verify(SECRET.as_bytes(), &header, &body) {
            inner.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED;
        }
        inner.mode.unwrap_or(Mode::Ok)
    };
    match mode {
        Mode::Fail => return StatusCode::INTERNAL_SERVER_ERROR,
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Ok => {}
    }
    let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut inner = inner.lock().expect("lock");
    inner.events.extend(payload["events"].as_array().cloned().unwrap_or_default());
    StatusCode::OK
}
