//! In-process tests of the client and the pool against a tiny mock Socket.IO server that
//! counts its clients and sends `refresh users` to all of them on every change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;

use super::client::ClientEvent;
use super::messages::{Target, WorkerConfig};
use super::pool::{Outcome, Pool};

const OPEN: &str =
    r#"0{"sid":"mock","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000}"#;

/// The mock server's shared state.
#[derive(Default)]
struct Mock {
    users: AtomicI64,
    pongs: AtomicU64,
}

async fn start_mock() -> (SocketAddr, Arc<Mock>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mock = Arc::new(Mock::default());
    let (totals, _) = broadcast::channel::<i64>(1024);
    let shared = Arc::clone(&mock);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp, totals.clone(), Arc::clone(&shared)));
        }
    });
    (addr, mock)
}

/// One mock session: open, ping, namespace connect, then totals until the client leaves.
async fn serve(tcp: TcpStream, totals: broadcast::Sender<i64>, mock: Arc<Mock>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
    let mut updates = totals.subscribe();
    let _ = ws.send(Message::text(OPEN)).await;
    let _ = ws.send(Message::text("2")).await;
    let mut joined = false;
    loop {
        tokio::select! {
            Ok(total) = updates.recv(), if joined => {
                let _ = ws.send(Message::text(format!(r#"42["refresh users",{total}]"#))).await;
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) if text.as_str() == "40" => {
                    let _ = ws.send(Message::text(r#"40{"sid":"s"}"#)).await;
                    joined = true;
                    let _ = totals.send(mock.users.fetch_add(1, Ordering::SeqCst) + 1);
                }
                Some(Ok(Message::Text(text))) if text.as_str() == "3" => {
                    mock.pongs.fetch_add(1, Ordering::SeqCst);
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    if joined {
        let _ = totals.send(mock.users.fetch_sub(1, Ordering::SeqCst) - 1);
    }
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

#[tokio::test]
async fn clients_connect_count_answer_pings_and_leave() {
    let (addr, mock) = start_mock().await;
    let (mut pool, mut events) = pool_for(addr);
    for _ in 0..20 {
        pool.spawn();
    }
    wait_for(&mut pool, &mut events, Outcome::Connected, 20).await;
    assert_eq!(wait_converged(&pool, 20).await, 20);
    assert_eq!(pool.report.ok, 20);
    assert_eq!(pool.report.latency.count(), 20);
    for _ in 0..5 {
        assert!(pool.stop_oldest());
    }
    wait_for(&mut pool, &mut events, Outcome::Left, 5).await;
    assert_eq!(wait_converged(&pool, 15).await, 15);
    assert_eq!(mock.users.load(Ordering::SeqCst), 15);
    assert_eq!(mock.pongs.load(Ordering::SeqCst), 20);
    let report = pool.final_report();
    assert_eq!((report.dropped, report.failed), (0, 0));
    assert!(report.messages_max >= 20, "{report:?}");
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
