//! Test helpers: a real `redis-server` on a free port, nodes in this process or as child
//! processes, real Socket.IO clients, and `eventually` (wait for a condition with a deadline).

#![allow(dead_code)] // each test module uses a different subset

use std::collections::HashMap;
use std::future::Future;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rollcall_node::config::{self, Overrides};
use rollcall_node::startup::App;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Default deadline for convergence checks.
pub const CONVERGE: Duration = Duration::from_secs(15);

/// A port nobody listens on right now (never 6379: the OS hands out ephemeral ports). Another
/// process may take it before ours binds it: start servers through [`on_free_port`].
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Starts a server on a free port, trying another port (up to 3 in all) when the one picked
/// was taken between [`free_port`] and the server's bind. `start` returns `None` when the server
/// exited before it was ready.
pub async fn on_free_port<T, Fut>(what: &str, mut start: impl FnMut(u16) -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..3 {
        if let Some(server) = start(free_port()).await {
            return server;
        }
    }
    panic!("{what} exited before it was ready on three free ports in a row");
}

/// Waits until `ready` holds or `child` exits; `false` when it exited first.
async fn ready_or_exited<F, Fut>(child: &mut Child, what: &str, mut ready: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if ready().await {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "timed out after 15s waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A key prefix no other test uses, so tests can share nothing by accident.
pub fn unique_prefix(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("t{}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed), test)
}

/// Polls `condition` until it holds; panics with `what` and the time waited if it never does.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return;
        }
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `redis-server` child process on a free loopback port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
}

impl RedisServer {
    /// Starts an empty server without persistence and waits until it answers PING.
    pub async fn start() -> Self {
        on_free_port("redis-server", Self::try_start_on).await
    }

    /// Starts on a given port (to restart "the same" Redis after a crash).
    pub async fn start_on(port: u16) -> Self {
        Self::try_start_on(port).await.unwrap_or_else(|| panic!("redis-server exited on port {port}"))
    }

    async fn try_start_on(port: u16) -> Option<Self> {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed (the test script installs it)");
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("redis url");
        let answers = ready_or_exited(&mut child, "redis-server answers PING", || {
            let client = client.clone();
            async move {
                match client.get_multiplexed_async_connection().await {
                    Ok(mut conn) => redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        answers.then(|| Self { child: Some(child), port })
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command and returns its reply.
    pub async fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let client = redis::Client::open(self.url()).expect("redis url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect to test redis");
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await.expect("redis command")
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Environment for a node: fast test timings, loopback, the given Redis and prefix.
pub fn node_env(redis: Option<&str>, prefix: &str, node_id: &str) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("ROLLCALL_BIND", "127.0.0.1"),
        ("ROLLCALL_LOG_LEVEL", "warn"),
        ("ROLLCALL_REDIS_PREFIX", prefix),
        ("ROLLCALL_NODE_ID", node_id),
        ("ROLLCALL_SHUTDOWN_GRACE_MS", "3000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(url) = redis {
        env.insert("ROLLCALL_REDIS_URL".to_owned(), url.to_owned());
    }
    env
}

/// A node running in this test process.
pub struct TestNode {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its node id.
    pub id: String,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Builds and starts a node in-process; `extra` overrides env settings.
pub async fn spawn_node(redis: Option<&str>, prefix: &str, id: &str, extra: &[(&str, &str)]) -> TestNode {
    let mut env = node_env(redis, prefix, id);
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let overrides = Overrides { port: Some(0), ..Overrides::default() };
    let settings = config::load(&overrides, &env).expect("test settings are valid");
    let app = App::build(&settings).await.expect("node builds");
    let port = app.port();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
    let node = TestNode { port, id: id.to_owned(), stop, task: Some(task) };
    node.wait_ready().await;
    node
}

impl TestNode {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.url());
        eventually("node is ready", Duration::from_secs(10), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
    }

    /// `GET /api/presence`.
    pub async fn presence(&self) -> serde_json::Value {
        presence(&self.url()).await
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.url());
        reqwest::get(&url).await.expect("metrics answer").text().await.expect("metrics body")
    }

    /// Graceful shutdown, as on SIGTERM; waits until the node has stopped.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("node task").expect("node stops cleanly");
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `GET <base>/api/presence` as JSON.
pub async fn presence(base: &str) -> serde_json::Value {
    reqwest::get(format!("{base}/api/presence")).await.expect("presence").json().await.expect("json")
}

/// A node as a child process of the real binary, for crash and signal tests.
pub struct ProcessNode {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl ProcessNode {
    /// Starts `rollcall serve` with `env` on a free port and waits until it is ready.
    pub async fn start(env: HashMap<String, String>) -> Self {
        on_free_port("rollcall serve", |port| Self::try_start_on(port, env.clone())).await
    }

    /// Starts on a given port.
    pub async fn start_on(port: u16, env: HashMap<String, String>) -> Self {
        Self::try_start_on(port, env).await.unwrap_or_else(|| panic!("rollcall exited on port {port}"))
    }

    async fn try_start_on(port: u16, env: HashMap<String, String>) -> Option<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .arg("serve")
            .env_clear()
            .envs(env)
            .env("ROLLCALL_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rollcall");
        let url = format!("http://127.0.0.1:{port}/readyz");
        let ready = ready_or_exited(&mut child, "process node is ready", || {
            let url = url.clone();
            async move { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        ready.then(|| Self { child, port })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends `signal` (e.g. "TERM", "KILL", "STOP", "CONT") to this process only.
    pub async fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `timeout`; returns its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("process exits in time")
            .expect("wait for child")
    }
}

/// What one client has received.
#[derive(Default, Debug)]
pub struct Seen {
    /// Every `refresh users` value, in arrival order.
    pub values: Vec<i64>,
    /// Every `room users` payload, per room, in arrival order: (users, connections).
    pub rooms: HashMap<String, Vec<(i64, i64)>>,
    /// Every `member joined` / `member left`, in arrival order: (joined, room, user).
    pub members: Vec<(bool, String, String)>,
}

/// A real Socket.IO client (the `rust_socketio` crate) recording `refresh users`.
pub struct TestClient {
    client: Client,
    seen: Arc<Mutex<Seen>>,
}

/// Connects a client to `base` over `transport`.
pub async fn connect(base: &str, transport: TransportType) -> TestClient {
    try_connect(base, transport).await.expect("client connects")
}

/// Like [`connect`], returning the error instead of panicking.
pub async fn try_connect(base: &str, transport: TransportType) -> Result<TestClient, rust_socketio::Error> {
    try_connect_with(base, transport, None).await
}

/// Like [`try_connect`], with an `auth` object in the handshake (`base` may carry a query).
pub async fn try_connect_with(
    base: &str,
    transport: TransportType,
    auth: Option<serde_json::Value>,
) -> Result<TestClient, rust_socketio::Error> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut builder = ClientBuilder::new(base).namespace("/").transport_type(transport).reconnect(false);
    if let Some(auth) = auth {
        builder = builder.auth(auth);
    }
    let client = record_refreshes(builder, seen.clone()).connect().await?;
    Ok(TestClient { client, seen })
}

fn record_refreshes(builder: ClientBuilder, seen: Arc<Mutex<Seen>>) -> ClientBuilder {
    let (rooms, members) = (seen.clone(), seen.clone());
    let builder = builder.on("refresh users", move |payload, _| {
        if let Payload::Text(values) = payload
            && let Some(n) = values.first().and_then(serde_json::Value::as_i64)
        {
            seen.lock().expect("seen lock").values.push(n);
        }
        async {}.boxed()
    });
    let builder = builder.on("room users", move |payload, _| {
        if let Payload::Text(values) = payload
            && let Some(count) = values.first()
            && let (Some(room), Some(users), Some(connections)) =
                (count["room"].as_str(), count["users"].as_i64(), count["connections"].as_i64())
        {
            rooms
                .lock()
                .expect("seen lock")
                .rooms
                .entry(room.to_owned())
                .or_default()
                .push((users, connections));
        }
        async {}.boxed()
    });
    let joined = members.clone();
    builder
        .on("member joined", move |payload, _| {
            record_member(&joined, true, payload);
            async {}.boxed()
        })
        .on("member left", move |payload, _| {
            record_member(&members, false, payload);
            async {}.boxed()
        })
}

fn record_member(seen: &Mutex<Seen>, joined: bool, payload: Payload) {
    if let Payload::Text(values) = payload
        && let Some(change) = values.first()
        && let (Some(room), Some(user)) = (change["room"].as_str(), change["user"].as_str())
    {
        seen.lock().expect("seen lock").members.push((joined, room.to_owned(), user.to_owned()));
    }
}

impl TestClient {
    /// The last value received.
    pub fn last(&self) -> Option<i64> {
        self.seen.lock().expect("seen lock").values.last().copied()
    }

    /// Every value received so far.
    pub fn values(&self) -> Vec<i64> {
        self.seen.lock().expect("seen lock").values.clone()
    }

    /// Emits an arbitrary event (clients' events must not change the count).
    pub async fn emit(&self, event: &str, data: serde_json::Value) {
        self.client.emit(event, data).await.expect("emit");
    }

    /// The last `room users` of `room`: (users, connections).
    pub fn room_last(&self, room: &str) -> Option<(i64, i64)> {
        self.seen.lock().expect("seen lock").rooms.get(room).and_then(|v| v.last().copied())
    }

    /// Every `room users` of `room` so far.
    pub fn room_values(&self, room: &str) -> Vec<(i64, i64)> {
        self.seen.lock().expect("seen lock").rooms.get(room).cloned().unwrap_or_default()
    }

    /// Every member change received so far: (joined, room, user).
    pub fn member_changes(&self) -> Vec<(bool, String, String)> {
        self.seen.lock().expect("seen lock").members.clone()
    }

    /// Emits `event` with `data` and waits for its ack (the ack's first argument). Like the
    /// official client, it first waits until the connection is accepted (this client does not
    /// wait for the CONNECT ack by itself; an event sent before it would reach no handler): the
    /// greeting `refresh users` comes right after the handlers are in place.
    pub async fn ask(&self, event: &str, data: serde_json::Value) -> serde_json::Value {
        eventually("the connection is accepted (greeted)", CONVERGE, || async { self.last().is_some() })
            .await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let callback = move |payload: Payload, _| {
            // The ack's arguments arrive as one array.
            let value = match payload {
                Payload::Text(values) => match values.into_iter().next() {
                    Some(serde_json::Value::Array(args)) => args.into_iter().next().unwrap_or_default(),
                    other => other.unwrap_or_default(),
                },
                _ => serde_json::Value::Null,
            };
            if let Some(tx) = tx.lock().expect("ack lock").take() {
                let _ = tx.send(value);
            }
            async {}.boxed()
        };
        self.client.emit_with_ack(event, data, Duration::from_secs(10), callback).await.expect("emit");
        tokio::time::timeout(Duration::from_secs(10), rx).await.expect("acked in time").expect("ack")
    }

    /// Disconnects cleanly.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }
}

/// Waits until every client's last value is `expected`.
pub async fn all_show(clients: &[TestClient], expected: i64) {
    let what = format!("all {} clients show {expected}", clients.len());
    eventually(&what, CONVERGE, || async { clients.iter().all(|c| c.last() == Some(expected)) }).await;
}

/// Connects `n` clients spread round-robin over `bases`, all at once.
pub async fn connect_many(bases: &[String], n: usize, transport: TransportType) -> Vec<TestClient> {
    let connects = (0..n).map(|i| connect(&bases[i % bases.len()], transport.clone()));
    futures_util::future::join_all(connects).await
}

/// A TCP proxy in front of Redis that can cut a node off (a network partition) and heal it.
pub struct TcpProxy {
    /// The port to point the node at.
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Forwards 127.0.0.1:`port` to 127.0.0.1:`target`.
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut_rx = cut_rx.clone();
                if *cut_rx.borrow() {
                    continue; // dropped: the connection is refused by closing it
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { port, cut, task }
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects a client that reconnects on its own (as browsers do) to `base`.
pub async fn connect_reconnecting(base: &str) -> TestClient {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let builder = ClientBuilder::new(base)
        .namespace("/")
        .transport_type(TransportType::Websocket)
        .reconnect(true)
        .reconnect_on_disconnect(true)
        .reconnect_delay(100, 500)
        .max_reconnect_attempts(255);
    let client = record_refreshes(builder, seen.clone()).connect().await.expect("client connects");
    TestClient { client, seen }
}

/// The key of the global count's hash (`c`, `u`, `n:<node>` = "sockets,anonymous").
pub fn global_key(prefix: &str) -> String {
    format!("{{{prefix}}}:agg")
}

/// Each node's sockets, from an `HGETALL` of [`global_key`].
pub fn node_shares(fields: &HashMap<String, String>) -> Vec<(String, i64)> {
    fields
        .iter()
        .filter_map(|(field, value)| {
            let node = field.strip_prefix("n:")?;
            let sockets = value.split(',').next()?.parse().expect("integer share");
            Some((node.to_owned(), sockets))
        })
        .collect()
}

impl RedisServer {
    /// Each node's sockets as Redis holds them.
    pub async fn shares(&self, prefix: &str) -> Vec<(String, i64)> {
        node_shares(&self.cmd::<HashMap<String, String>>(&["HGETALL", &global_key(prefix)]).await)
    }

    /// The cluster's sockets as Redis holds them (`None` when the count is not there).
    pub async fn global_connections(&self, prefix: &str) -> Option<i64> {
        self.cmd::<Option<i64>>(&["HGET", &global_key(prefix), "c"]).await
    }
}

/// Opens a raw WebSocket handshake with `query` and returns the server's answer to `40`.
pub async fn raw_connect(port: u16, query: &str, auth: Option<serde_json::Value>) -> String {
    use futures_util::{SinkExt, StreamExt};
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&{query}");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("websocket handshake");
    let _open = ws.next().await;
    let connect = auth.map_or_else(|| "40".to_owned(), |auth| format!("40{auth}"));
    ws.send(tokio_tungstenite::tungstenite::Message::text(connect.clone())).await.expect("send");
    // Skip Engine.IO pings (the first one comes at once): the answer is a Socket.IO packet.
    for _ in 0..10 {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("an answer");
        let text = frame.expect("a frame").expect("ok").into_text().expect("text").to_string();
        if text.starts_with('4') {
            return text;
        }
    }
    panic!("no Socket.IO answer to {connect}");
}
