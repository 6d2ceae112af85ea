//! Hostile input: malformed packets, oversized payloads, bogus and half-finished handshakes,
//! connection floods, garbage on the Redis channel. None of it crashes a node or moves the count.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rust_socketio::TransportType;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    CONVERGE, RedisServer, TestNode, all_show, connect, connect_many, eventually, spawn_node, try_connect,
    unique_prefix,
};

async fn healthy(node: &TestNode) {
    let status = reqwest::get(format!("{}/healthz", node.url())).await.expect("node answers").status();
    assert_eq!(status, 200);
}

async fn metrics(node: &TestNode) -> String {
    reqwest::get(format!("{}/metrics", node.url())).await.expect("metrics").text().await.expect("body")
}

/// The value of one sample line of `/metrics`, 0 if absent.
fn sample(metrics: &str, line_prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_over_websocket_do_not_crash_or_move_the_count() {
    let node = spawn_node(None, &unique_prefix("malformed"), "n", &[]).await;
    let watchers = connect_many(&[node.url()], 3, TransportType::Websocket).await;
    all_show(&watchers, 3).await;
    let url = format!("ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket", node.port);
    let garbage: Vec<Message> = vec![
        Message::text("42["),
        Message::text("4{{{"),
        Message::text("9"),
        Message::text(""),
        Message::text("42[\"refresh users\",1e400]"),
        Message::text("40/nonexistent,"),
        Message::text("43999[]"),
        Message::binary(vec![0xff, 0xfe, 0x00, 0x42]),
        Message::text(format!("42[\"x\",\"{}\"]", "y".repeat(64 * 1024))),
    ];
    for packet in garbage {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("websocket handshake");
        let _open = ws.next().await;
        ws.send(Message::text("40")).await.expect("connect to /");
        let _ = ws.send(packet).await;
        // Read until the node closes us or goes quiet; either way it must still be serving.
        let _ =
            tokio::time::timeout(Duration::from_millis(300), async { while ws.next().await.is_some() {} })
                .await;
        drop(ws);
        healthy(&node).await;
    }
    all_show(&watchers, 3).await;
    eventually("the node counts only the watchers", CONVERGE, || async {
        node.presence().await["users"] == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payloads_and_bogus_handshakes_are_refused_cleanly() {
    let node = spawn_node(None, &unique_prefix("bogus"), "n", &[]).await;
    let watcher = [connect(&node.url(), TransportType::Websocket).await];
    all_show(&watcher, 1).await;
    let http = reqwest::Client::new();
    let base = format!("{}/socket.io/", node.url());
    for query in [
        "EIO=3&transport=polling",
        "EIO=4&transport=carrier-pigeon",
        "EIO=4&transport=polling&sid=nope",
        "garbage",
    ] {
        let status = http.get(format!("{base}?{query}")).send().await.expect("answer").status();
        assert!(status.is_client_error(), "{query}: {status}");
    }
    // A real polling session, then a POST far over max_payload (4096 bytes by default).
    let open = http
        .get(format!("{base}?EIO=4&transport=polling"))
        .send()
        .await
        .expect("open")
        .text()
        .await
        .expect("body");
    let sid =
        open.split("\"sid\":\"").nth(1).and_then(|rest| rest.split('"').next()).expect("sid in open packet");
    let huge = format!("42[\"x\",\"{}\"]", "z".repeat(200_000));
    let status = http
        .post(format!("{base}?EIO=4&transport=polling&sid={sid}"))
        .body(huge)
        .send()
        .await
        .map(|r| r.status());
    assert!(status.as_ref().map_or(true, |s| !s.is_success()), "oversized POST accepted: {status:?}");
    healthy(&node).await;
    let late = connect(&node.url(), TransportType::Polling).await;
    all_show(&[late], 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_finished_requests_do_not_block_others() {
    let node = spawn_node(None, &unique_prefix("halfopen"), "n", &[]).await;
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", node.port)).await.expect("tcp");
        stream.write_all(b"GET /socket.io/?EIO=4&transport=webso").await.expect("partial request");
        stalled.push(stream);
    }
    let clients = connect_many(&[node.url()], 5, TransportType::Websocket).await;
    all_show(&clients, 5).await;
    drop(stalled);
    healthy(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_beyond_max_connections_is_refused_and_counted() {
    let node = spawn_node(None, &unique_prefix("flood"), "n", &[("ROLLCALL_MAX_CONNECTIONS", "20")]).await;
    let admitted = connect_many(&[node.url()], 20, TransportType::Websocket).await;
    all_show(&admitted, 20).await;
    let mut refused = 0;
    for _ in 0..10 {
        match try_connect(&node.url(), TransportType::Websocket).await {
            Err(_) => refused += 1,
            Ok(extra) => {
                // The handshake may race the counter; the node must still not exceed the limit for long.
                extra.disconnect().await;
            }
        }
    }
    assert!(refused >= 8, "only {refused} of 10 over-limit connects were refused");
    all_show(&admitted, 20).await;
    let text = metrics(&node).await;
    assert!(sample(&text, "rollcall_connections_refused_total{reason=\"max_connections\"}") >= 8.0, "{text}");
    healthy(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_redis_channel_is_ignored_and_forged_totals_heal() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("garbage");
    let a = spawn_node(Some(&redis.url()), &prefix, "a", &[]).await;
    let b = spawn_node(Some(&redis.url()), &prefix, "b", &[]).await;
    let clients = connect_many(&[a.url(), b.url()], 8, TransportType::Websocket).await;
    all_show(&clients, 8).await;
    let channel = format!("{{{prefix}}}:updates");
    for junk in ["garbage", "{\"v\":\"x\",\"users\":1}", "{}", "\u{0}\u{1}", "{\"v\":18446744073709551615}"] {
        let _: i64 = redis.cmd(&["PUBLISH", &channel, junk]).await;
    }
    // A well-formed but forged announcement from the far future: nodes take it, then the next
    // heartbeat's authoritative reply overrules it.
    let _: i64 = redis.cmd(&["PUBLISH", &channel, "{\"v\":9000000000000,\"users\":-7}"]).await;
    all_show(&clients, 8).await;
    // And later genuine changes still flow.
    let mut clients = clients;
    clients.push(connect(&b.url(), TransportType::Websocket).await);
    all_show(&clients, 9).await;
    let text = metrics(&a).await;
    assert!(sample(&text, "rollcall_bad_announcements_total") >= 4.0, "{text}");
    healthy(&a).await;
}
