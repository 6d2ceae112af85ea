//! In-process tests of the client and the pool against a real standalone rollcall node, with
//! a short Engine.IO ping interval so a client that did not answer pings would be dropped;
//! rooms joined at connect and moves between them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::ClientEvent;
use super::messages::{RoomSummary, Target, WorkerConfig};
use super::pool::{Outcome, Pool};
use super::rooms::{Distribution, RoomPlan};
use rollcall_node::config::{self, Overrides};
use rollcall_node::startup::App;

/// Starts a standalone node on a free loopback port; it stops when the token is cancelled.
async fn start_node(stop: &CancellationToken) -> SocketAddr {
    start_node_with(stop, &[]).await
}

/// [`start_node`] with more settings (`ROLLCALL_*` variables).
async fn start_node_with(stop: &CancellationToken, extra: &[(&str, &str)]) -> SocketAddr {
    let env: HashMap<String, String> = [
        ("ROLLCALL_BIND", "127.0.0.1"),
        ("ROLLCALL_LOG_LEVEL", "warn"),
        ("ROLLCALL_PING_INTERVAL_MS", "100"),
        ("ROLLCALL_PING_TIMEOUT_MS", "200"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let settings =
        config::load(&Overrides { port: Some(0), ..Overrides::default() }, &env).expect("settings");
    let app = App::build(&settings).await.expect("node builds");
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
    tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
    addr
}

/// The node's own count of its sockets.
async fn node_local(addr: SocketAddr) -> i64 {
    let presence: serde_json::Value = reqwest::get(format!("http://{addr}/api/presence"))
        .await
        .expect("presence")
        .json()
        .await
        .expect("json");
    presence["local"].as_i64().expect("local")
}

/// The node's `/api/presence` document.
async fn presence(addr: SocketAddr) -> serde_json::Value {
    reqwest::get(format!("http://{addr}/api/presence")).await.expect("presence").json().await.expect("json")
}

fn pool_for(addr: SocketAddr, rooms: Option<RoomPlan>) -> (Pool, mpsc::UnboundedReceiver<ClientEvent>) {
    pool_signed(addr, rooms, None)
}

/// [`pool_for`] whose clients sign in with tokens made with `jwt_secret`.
fn pool_signed(
    addr: SocketAddr,
    rooms: Option<RoomPlan>,
    jwt_secret: Option<&str>,
) -> (Pool, mpsc::UnboundedReceiver<ClientEvent>) {
    let target = Target {
        ws_url: format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
        addr,
        presence_url: format!("http://{addr}/api/presence"),
    };
    let config = WorkerConfig {
        index: 0,
        workers: 1,
        targets: vec![target],
        source_ips: vec!["127.0.0.2".parse().expect("ip"), "127.0.0.3".parse().expect("ip")],
        connect_timeout_ms: 5_000,
        max_duration_ms: 60_000,
        rooms,
        jwt_secret: jwt_secret.map(str::to_owned),
    };
    let (events_tx, events) = mpsc::unbounded_channel();
    (Pool::new(config, events_tx), events)
}

/// Feeds client events to the pool until `want` outcomes of kind `kind` arrived.
async fn wait_for(
    pool: &mut Pool,
    events: &mut mpsc::UnboundedReceiver<ClientEvent>,
    kind: Outcome,
    want: usize,
) {
    let mut seen = 0;
    while seen < want {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
        let event = event.expect("client event in time").expect("channel open");
        if pool.on_event(event) == Some(kind) {
            seen += 1;
        }
    }
}

/// Polls the pool until every connected client saw `truth`.
async fn wait_converged(pool: &Pool, truth: i64) -> u64 {
    for _ in 0..200 {
        let status = pool.status(Some(truth));
        if status.matching == status.connected {
            return status.connected;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("clients never converged on {truth}: {:?}", pool.status(Some(truth)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connect_count_answer_pings_and_leave() {
    let stop = CancellationToken::new();
    let addr = start_node(&stop).await;
    let (mut pool, mut events) = pool_for(addr, None);
    for _ in 0..20 {
        pool.spawn();
    }
    wait_for(&mut pool, &mut events, Outcome::Connected, 20).await;
    assert_eq!(wait_converged(&pool, 20).await, 20);
    assert_eq!(pool.report.ok, 20);
    assert_eq!(pool.report.latency.count(), 20);
    // Several ping intervals pass: clients that did not answer would be dropped by now.
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..10 {
        ticks.tick().await;
        while let Ok(event) = events.try_recv() {
            assert_ne!(pool.on_event(event), Some(Outcome::Dropped), "a client was dropped");
        }
    }
    assert_eq!(node_local(addr).await, 20);
    for _ in 0..5 {
        assert!(pool.stop_oldest());
    }
    wait_for(&mut pool, &mut events, Outcome::Left, 5).await;
    assert_eq!(wait_converged(&pool, 15).await, 15);
    assert_eq!(node_local(addr).await, 15);
    let report = pool.final_report();
    assert_eq!((report.dropped, report.failed), (0, 0));
    assert!(report.messages_max >= 2, "{report:?}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_jwt_secret_every_client_signs_in_as_its_own_user() {
    const SECRET: &str = "swarm-pool-test-secret-of-32-bytes!!";
    let stop = CancellationToken::new();
    let addr =
        start_node_with(&stop, &[("ROLLCALL_AUTH", "required"), ("ROLLCALL_JWT_SECRET", SECRET)]).await;
    let (mut unsigned, mut unsigned_events) = pool_for(addr, None);
    unsigned.spawn();
    wait_for(&mut unsigned, &mut unsigned_events, Outcome::Failed, 1).await;
    let (mut pool, mut events) = pool_signed(addr, None, Some(SECRET));
    for _ in 0..3 {
        pool.spawn();
    }
    wait_for(&mut pool, &mut events, Outcome::Connected, 3).await;
    assert_eq!(wait_converged(&pool, 3).await, 3);
    // Three distinct signed users, none anonymous.
    let presence = presence(addr).await;
    assert_eq!((presence["users"].as_i64(), presence["local"].as_i64()), (Some(3), Some(3)), "{presence}");
    stop.cancel();
}

#[tokio::test]
async fn refused_connects_are_counted_by_kind() {
    let unused = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = unused.local_addr().expect("addr");
    drop(unused);
    let (mut pool, mut events) = pool_for(addr, None);
    pool.spawn();
    pool.spawn();
    wait_for(&mut pool, &mut events, Outcome::Failed, 2).await;
    assert_eq!(pool.report.failed, 2);
    assert_eq!(pool.report.errors.get("tcp_refused"), Some(&2));
    assert_eq!(pool.status(Some(0)).connected, 0);
}

/// A room's count from the node's API.
async fn api_room(addr: SocketAddr, room: &str) -> i64 {
    let count: rollcall_wire::RoomCount = reqwest::get(format!("http://{addr}/api/rooms/{room}"))
        .await
        .expect("room")
        .json()
        .await
        .expect("json");
    count.connections
}

/// Polls until every room's clients show its number of clients (one node, nobody else).
async fn rooms_converged(pool: &Pool) -> Vec<RoomSummary> {
    for _ in 0..200 {
        let summaries = pool.room_summaries();
        let exact = |s: &RoomSummary| s.without_value == 0 && s.min == s.clients as i64 && s.max == s.min;
        if summaries.iter().filter(|s| s.clients > 0).all(exact) {
            return summaries;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("rooms never converged: {:?}", pool.room_summaries());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_join_rooms_at_connect_and_move_between_them() {
    let stop = CancellationToken::new();
    let addr = start_node(&stop).await;
    let plan = RoomPlan {
        count: 3,
        distribution: Distribution::Uniform,
        zipf_s: 0.0,
        prefix: "t-".to_owned(),
        seed: 5,
    };
    let (mut pool, mut events) = pool_for(addr, Some(plan));
    for _ in 0..12 {
        pool.spawn();
    }
    wait_for(&mut pool, &mut events, Outcome::Connected, 12).await;
    let summaries = rooms_converged(&pool).await;
    assert_eq!(summaries.iter().map(|s| s.clients).sum::<u64>(), 12);
    for summary in &summaries {
        assert_eq!(api_room(addr, &format!("t-{}", summary.room)).await, summary.clients as i64);
        assert!(summary.last_change_us > 0 && summary.latest_change_us > 0, "{summary:?}");
    }
    for _ in 0..6 {
        assert!(pool.move_random());
    }
    wait_for(&mut pool, &mut events, Outcome::Moved, 6).await;
    assert_eq!(pool.moves_in_flight(), 0);
    let summaries = rooms_converged(&pool).await;
    assert_eq!(summaries.iter().map(|s| s.clients).sum::<u64>(), 12, "a move keeps the client in a room");
    for summary in &summaries {
        assert_eq!(api_room(addr, &format!("t-{}", summary.room)).await, summary.clients as i64);
    }
    let truths: Vec<(u32, i64)> = summaries.iter().map(|s| (s.room, s.clients as i64)).collect();
    assert_eq!(pool.room_stale(&truths), (0, 0));
    let wrong: Vec<(u32, i64)> = truths.iter().map(|&(room, count)| (room, count + 1)).collect();
    assert_eq!(pool.room_stale(&wrong).0, 12);
    let report = pool.final_report();
    assert_eq!((report.moves_attempted, report.moves_ok, report.moves_failed), (6, 6, 0));
    assert_eq!(report.move_latency.count(), 6);
    assert!(report.room_messages_total >= 12 + 6, "a greeting each, and one per move: {report:?}");
    stop.cancel();
}
