//! Rooms on real redis-server and real Socket.IO clients: joined at connect and by event, over
//! WebSocket and long-polling, on three nodes; the pushed `room users`, the rooms API, faults,
//! and every bad input.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rust_socketio::TransportType;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    CONVERGE, ProcessNode, RedisServer, TestClient, TestNode, all_show, connect, eventually, node_env,
    raw_connect, spawn_node, try_connect_with, unique_prefix,
};

async fn three_nodes(redis: &RedisServer, prefix: &str) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(spawn_node(Some(&redis.url()), prefix, id, &[]).await);
    }
    nodes
}

/// `GET /api/rooms/{room}` of `base`: (users, connections).
pub async fn room_count(base: &str, room: &str) -> (i64, i64) {
    let path: String = form_urlencoded::byte_serialize(room.as_bytes()).collect();
    let body: Value =
        reqwest::get(format!("{base}/api/rooms/{path}")).await.expect("GET").json().await.expect("json");
    assert_eq!(body["room"], room, "{body}");
    (body["users"].as_i64().expect("users"), body["connections"].as_i64().expect("connections"))
}

/// Waits until every base URL reports `expected` connections in `room`.
async fn api_shows(bases: &[String], room: &str, expected: i64) {
    let what = format!("every node's API shows {expected} in {room}");
    eventually(&what, CONVERGE, || async {
        for base in bases {
            if room_count(base, room).await.1 != expected {
                return false;
            }
        }
        true
    })
    .await;
}

/// Waits until every client shows `expected` connections in `room`.
async fn members_show(clients: &[&TestClient], room: &str, expected: i64) {
    let what = format!("{} members show {expected} in {room}", clients.len());
    eventually(&what, CONVERGE, || async {
        clients.iter().all(|c| c.room_last(room) == Some((expected, expected)))
    })
    .await;
}

fn with_query(base: &str, rooms: &[&str]) -> String {
    let query: Vec<String> = rooms
        .iter()
        .map(|r| format!("room={}", form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()))
        .collect();
    format!("{base}/?{}", query.join("&"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_at_connect_and_by_event_on_three_nodes_over_both_transports() {
    let redis = RedisServer::start().await;
    let nodes = three_nodes(&redis, &unique_prefix("rooms")).await;
    let urls: Vec<String> = nodes.iter().map(TestNode::url).collect();
    let by_query = try_connect_with(&with_query(&urls[0], &["/page/a"]), TransportType::Websocket, None)
        .await
        .expect("connects");
    let by_auth =
        try_connect_with(&urls[1], TransportType::Polling, Some(json!({ "rooms": ["/page/a", "/page/b"] })))
            .await
            .expect("connects");
    let by_event = connect(&urls[2], TransportType::Websocket).await;
    members_show(&[&by_query, &by_auth], "/page/a", 2).await;
    let ack = by_event.ask("join", json!("/page/a")).await;
    assert_eq!(
        ack,
        json!({ "ok": true, "room": "/page/a", "users": 3, "connections": 3 }),
        "ack counts itself"
    );
    members_show(&[&by_query, &by_auth, &by_event], "/page/a", 3).await;
    members_show(&[&by_auth], "/page/b", 1).await;
    assert!(by_query.room_values("/page/b").is_empty(), "only members receive a room's count");
    api_shows(&urls, "/page/a", 3).await;
    all_show(&[by_query, by_auth], 3).await;

    let ack = by_event.ask("leave", json!("/page/a")).await;
    assert_eq!(ack, json!({ "ok": true, "room": "/page/a", "users": 2, "connections": 2 }));
    let again = by_event.ask("leave", json!("/page/a")).await;
    assert_eq!(again["ok"], true, "leaving a room one is not in is harmless: {again}");
    api_shows(&urls, "/page/a", 2).await;
    let twice = by_event.ask("join", json!({ "room": "/page/b" })).await;
    let thrice = by_event.ask("join", json!("/page/b")).await;
    assert_eq!(twice["connections"], 2);
    assert_eq!(thrice["connections"], 2, "joining twice is counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_and_leaves_in_one_room_on_all_nodes_end_exact() {
    let redis = RedisServer::start().await;
    let nodes = three_nodes(&redis, &unique_prefix("hot")).await;
    let urls: Vec<String> = nodes.iter().map(TestNode::url).collect();
    let mut clients = crate::helpers::connect_many(&urls, 30, TransportType::Websocket).await;
    let joins = clients.iter().map(|c| c.ask("join", json!("hot")));
    for ack in futures_util::future::join_all(joins).await {
        assert_eq!(ack["ok"], true, "{ack}");
    }
    api_shows(&urls, "hot", 30).await;
    // At once, on all nodes: 8 leave by event, 7 disconnect.
    let disconnecting: Vec<TestClient> = clients.drain(8..15).collect();
    let leaves = clients[..8].iter().map(|c| c.ask("leave", json!("hot")));
    let disconnects = disconnecting.into_iter().map(TestClient::disconnect);
    let (acks, _) =
        tokio::join!(futures_util::future::join_all(leaves), futures_util::future::join_all(disconnects));
    assert!(acks.iter().all(|a| a["ok"] == true));
    api_shows(&urls, "hot", 15).await;
    let staying: Vec<&TestClient> = clients[8..].iter().collect();
    members_show(&staying, "hot", 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_every_room_it_was_in() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("killrooms");
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(ProcessNode::start(node_env(Some(&redis.url()), &prefix, id)).await);
    }
    let urls: Vec<String> = nodes.iter().map(ProcessNode::url).collect();
    let watcher =
        try_connect_with(&urls[0], TransportType::Websocket, Some(json!({ "rooms": ["r0", "r1", "r2"] })))
            .await
            .expect("connects");
    let mut doomed = Vec::new();
    for i in 0..20 {
        let rooms = json!({ "rooms": [format!("r{}", i % 10), format!("s{i}")] });
        doomed
            .push(try_connect_with(&urls[2], TransportType::Websocket, Some(rooms)).await.expect("connects"));
    }
    api_shows(&urls[..1], "r0", 3).await;
    api_shows(&urls[..1], "s19", 1).await;
    nodes[2].signal("KILL").await;
    let killed = Instant::now();
    api_shows(&urls[..2], "r0", 1).await;
    members_show(&[&watcher], "r0", 1).await;
    eprintln!("MEASURED every room of a SIGKILLed node healed: {} ms", killed.elapsed().as_millis());
    api_shows(&urls[..2], "s19", 0).await;
    let page: Value = reqwest::get(format!("{}/api/rooms?limit=100", urls[0]))
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> =
        page["rooms"].as_array().expect("rooms").iter().filter_map(|r| r["room"].as_str()).collect();
    assert_eq!(names, ["r0", "r1", "r2"], "empty rooms leave no trace");
    drop(doomed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_rebuilds_every_room_from_the_nodes() {
    let mut redis = RedisServer::start().await;
    let prefix = unique_prefix("rebuild");
    let nodes = three_nodes(&redis, &prefix).await;
    let urls: Vec<String> = nodes.iter().map(TestNode::url).collect();
    let mut clients = Vec::new();
    for i in 0..12 {
        let rooms = json!({ "rooms": [format!("room-{}", i % 4)] });
        clients.push(
            try_connect_with(&urls[i % 3], TransportType::Websocket, Some(rooms)).await.expect("connects"),
        );
    }
    api_shows(&urls, "room-3", 3).await;
    let port = redis.port;
    redis.kill().await;
    let redis = RedisServer::start_on(port).await;
    let back = Instant::now();
    for i in 0..4 {
        api_shows(&urls, &format!("room-{i}"), 3).await;
    }
    eprintln!("MEASURED every room rebuilt after Redis restarted empty: {} ms", back.elapsed().as_millis());
    let newcomer = try_connect_with(&urls[0], TransportType::Websocket, Some(json!({ "rooms": ["room-0"] })))
        .await
        .expect("connects");
    let members: Vec<&TestClient> = clients.iter().step_by(4).chain([&newcomer]).collect();
    members_show(&members, "room-0", 4).await;
    drop(redis);
}

/// One raw connection sends `events` alternating `join`/`leave` of one room with ack ids, at once;
/// returns the acks' texts received within 3 s (a flooding client may not get every ack: when its
/// socket's send buffer is full, the node drops what does not fit).
async fn flood(port: u16, events: usize) -> Vec<String> {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("websocket handshake");
    let _open = ws.next().await;
    ws.send(Message::text("40")).await.expect("send");
    let mut acks = Vec::new();
    let mut sent = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while acks.len() < events {
        let Ok(frame) = tokio::time::timeout_at(deadline, ws.next()).await else { break };
        let text = frame.expect("a frame").expect("ok").into_text().expect("text").to_string();
        if text.starts_with("40") && !sent {
            for i in 0..events {
                let event = if i % 2 == 0 { "join" } else { "leave" };
                ws.send(Message::text(format!("42{i}[\"{event}\",\"flooded\"]"))).await.expect("send");
            }
            sent = true;
        } else if text.starts_with("43") {
            acks.push(text);
        }
    }
    acks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rooms_are_refused_with_a_reason_and_change_nothing() {
    let node =
        spawn_node(None, &unique_prefix("badrooms"), "n", &[("ROLLCALL_MAX_ROOMS_PER_CLIENT", "2")]).await;
    let refusals = [
        ("room=a%01b", None, "control characters"),
        ("room=", None, "empty"),
        ("", Some(json!({ "rooms": "lobby" })), "array"),
        ("", Some(json!({ "rooms": [1] })), "string"),
        ("room=a&room=b&room=c", None, "too many rooms"),
        (&format!("room={}", "x".repeat(257)), None, "256 bytes"),
    ];
    for (query, auth, why) in refusals {
        let answer = raw_connect(node.port, query, auth.clone()).await;
        assert!(answer.starts_with("44{"), "{query} {auth:?}: CONNECT_ERROR expected, got {answer}");
        let error: Value = serde_json::from_str(&answer[2..]).expect("json");
        assert!(error["message"].as_str().is_some_and(|m| m.contains(why)), "{query} {auth:?}: {error}");
    }
    assert!(raw_connect(node.port, "room=fine", None).await.starts_with("40"), "a good handshake connects");

    let client = connect(&node.url(), TransportType::Websocket).await;
    for (data, why) in [
        (json!(42), "string"),
        (json!(""), "empty"),
        (json!("x".repeat(300)), "256 bytes"),
        (json!("tab\there"), "control"),
        (json!({ "members": true }), "string"),
    ] {
        let ack = client.ask("join", data.clone()).await;
        assert_eq!(ack["ok"], false, "{data}: {ack}");
        assert!(ack["error"].as_str().is_some_and(|e| e.contains(why)), "{data}: {ack}");
    }
    for room in ["one", "two"] {
        assert_eq!(client.ask("join", json!(room)).await["ok"], true);
    }
    let third = client.ask("join", json!("three")).await;
    assert!(third["error"].as_str().is_some_and(|e| e.contains("2 rooms")), "{third}");
    assert_eq!(room_count(&node.url(), "three").await, (0, 0));

    // A flood of joins and leaves is cut off by the per-connection budget, not executed.
    let acks = flood(node.port, 60).await;
    let limited = acks.iter().filter(|a| a.contains("slow down")).count();
    assert!(limited >= 30, "only {limited} of 60 flooded events were refused: {acks:?}");
    let metrics =
        reqwest::get(format!("{}/metrics", node.url())).await.expect("metrics").text().await.expect("text");
    for reason in ["invalid", "max_rooms", "rate_limited"] {
        let line = format!("rollcall_room_joins_refused_total{{reason=\"{reason}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "{line} missing");
    }
    assert_eq!(node.presence().await["users"], 1, "refusals never count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_api_pages_by_prefix_and_counts_many_at_once() {
    let node = spawn_node(None, &unique_prefix("api"), "n", &[]).await;
    let mut clients = Vec::new();
    for i in 0..25 {
        let rooms = json!({ "rooms": [format!("doc/{i:02}"), "all"] });
        clients.push(
            try_connect_with(&node.url(), TransportType::Websocket, Some(rooms)).await.expect("connects"),
        );
    }
    let _other =
        try_connect_with(&node.url(), TransportType::Websocket, Some(json!({ "rooms": ["zzz"] }))).await;
    api_shows(&[node.url()], "all", 25).await;
    let http = reqwest::Client::new();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let mut url = format!("{}/api/rooms?prefix=doc%2F&limit=10", node.url());
        if let Some(c) = &cursor {
            url.push_str(&format!(
                "&cursor={}",
                form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
            ));
        }
        let page: Value = http.get(url).send().await.expect("GET").json().await.expect("json");
        for room in page["rooms"].as_array().expect("rooms") {
            assert_eq!(room["connections"], 1);
            seen.push(room["room"].as_str().expect("name").to_owned());
        }
        cursor = page["next"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("doc/{i:02}")).collect();
    assert_eq!(seen, expected, "three pages, in order, prefix only");

    let body = json!({ "rooms": ["all", "nobody", "doc/07"] });
    let counts: Value = http
        .post(format!("{}/api/rooms/counts", node.url()))
        .json(&body)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("json");
    assert_eq!(
        counts["rooms"].as_array().map(|r| r.iter().map(|c| c["connections"].as_i64()).collect::<Vec<_>>()),
        Some(vec![Some(25), Some(0), Some(1)])
    );
    let too_many = json!({ "rooms": vec!["r"; 1001] });
    let response =
        http.post(format!("{}/api/rooms/counts", node.url())).json(&too_many).send().await.expect("POST");
    assert_eq!(response.status(), 400);
    for bad in ["/api/rooms?limit=0", "/api/rooms?limit=1001", "/api/rooms/a%01b", "/api/rooms?cursor="] {
        let response = http.get(format!("{}{bad}", node.url())).send().await.expect("GET");
        assert_eq!(response.status(), 400, "{bad}");
        let error: Value = response.json().await.expect("json error");
        assert!(error["error"].is_string(), "{bad}: {error}");
    }
    let spec: Value = http
        .get(format!("{}/api/openapi.json", node.url()))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(spec["openapi"], "3.1.0");
}
