//! In-process tests of the client and the pool against a real standalone rollcall node, with
//! a short Engine.IO ping interval so a client that did not answer pings would be dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::ClientEvent;
use super::messages::{Target, WorkerConfig};
use super::pool::{Outcome, Pool};
use rollcall_node::config::{self, Overrides};
use rollcall_node::startup::App;

/// Starts a standalone node on a free loopback port; it stops when the token is cancelled.
async fn start_node(stop: &CancellationToken) -> SocketAddr {
    let env: HashMap<String, String> = [
        ("ROLLCALL_BIND", "127.0.0.1"),
        ("ROLLCALL_LOG_LEVEL", "warn"),
        ("ROLLCALL_PING_INTERVAL_MS", "100"),
        ("ROLLCALL_PING_TIMEOUT_MS", "200"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
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

fn pool_for(addr: SocketAddr) -> (Pool, mpsc::UnboundedReceiver<ClientEvent>) {
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
    let (mut pool, mut events) = pool_for(addr);
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

#[tokio::test]
async fn refused_connects_are_counted_by_kind() {
    let unused = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = unused.local_addr().expect("addr");
    drop(unused);
    let (mut pool, mut events) = pool_for(addr);
    pool.spawn();
    pool.spawn();
    wait_for(&mut pool, &mut events, Outcome::Failed, 2).await;
    assert_eq!(pool.report.failed, 2);
    assert_eq!(pool.report.errors.get("tcp_refused"), Some(&2));
    assert_eq!(pool.status(Some(0)).connected, 0);
}
