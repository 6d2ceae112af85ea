//! Users: signed identities at the handshake, every refusal, one person with tabs on two nodes,
//! token refresh and expiry, member lists and member changes with the cap, the per-user limit,
//! and API keys. Real redis-server, real nodes, real Socket.IO clients.

use std::time::Instant;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rust_socketio::TransportType;
use serde_json::{Value, json};

use crate::helpers::{
    CONVERGE, ProcessNode, RedisServer, TestClient, eventually, node_env, presence, raw_connect, spawn_node,
    try_connect_with, unique_prefix,
};

/// At least 32 bytes, as the node requires.
pub const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An HS256 token for `sub`, valid for `seconds`, with `extra` claims.
pub fn token(sub: &str, seconds: u64, extra: Value) -> String {
    let mut claims = json!({ "sub": sub, "exp": now() + seconds });
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// Settings of a node that requires tokens.
fn signed(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut settings =
        vec![("ROLLCALL_AUTH", "required"), ("ROLLCALL_JWT_SECRET", SECRET), ("ROLLCALL_JWT_LEEWAY_MS", "0")];
    settings.extend_from_slice(extra);
    settings
}

async fn connect_as(base: &str, token: &str, rooms: &[&str]) -> TestClient {
    let auth = json!({ "token": token, "rooms": rooms });
    try_connect_with(base, TransportType::Websocket, Some(auth)).await.expect("client connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_connect_error_naming_its_reason_and_counts_nothing() {
    let node =
        spawn_node(None, &unique_prefix("refusals"), "n", &signed(&[("ROLLCALL_JWT_AUDIENCE", "rollcall")]))
            .await;
    let good = |extra: Value| {
        let mut extra = extra;
        extra["aud"] = json!("rollcall");
        token("alice", 60, extra)
    };
    let other_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": "x", "exp": now() + 60, "aud": "rollcall" }),
        &EncodingKey::from_secret(b"a-different-secret-also-long-enough-here"),
    )
    .expect("sign");
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "required", "missing"),
        (json!({ "token": 42 }), "malformed", "malformed"),
        (json!({ "token": "not.a.jwt" }), "malformed", "malformed"),
        (
            json!({ "token": token("alice", 0, json!({ "exp": now() - 60, "aud": "rollcall" })) }),
            "expired",
            "expired",
        ),
        (json!({ "token": good(json!({ "nbf": now() + 600 })) }), "not valid yet", "not_yet_valid"),
        (json!({ "token": other_key }), "signature", "bad_signature"),
        (
            json!({ "token": token("alice", 60, json!({ "aud": "someone-else" })) }),
            "audience",
            "wrong_audience",
        ),
        (json!({ "token": good(json!({ "sub": 7 })) }), "sub", "bad_subject"),
        (json!({ "token": "x".repeat(9000) }), "8 KiB", "too_large"),
        (json!({ "token": good(json!({ "rooms": ["a/*"] })), "rooms": ["b"] }), "not allowed", "not_allowed"),
    ];
    for (auth, message, _) in &cases {
        let answer = raw_connect(node.port, "", Some(auth.clone())).await;
        assert!(answer.starts_with("44{"), "{auth}: CONNECT_ERROR expected, got {answer}");
        let error: Value = serde_json::from_str(&answer[2..]).expect("json");
        assert!(error["message"].as_str().is_some_and(|m| m.contains(message)), "{auth}: {error}");
    }
    let metrics =
        reqwest::get(format!("{}/metrics", node.url())).await.expect("metrics").text().await.expect("text");
    for (_, _, reason) in &cases[..cases.len() - 1] {
        let line = format!("rollcall_auth_refused_total{{reason=\"{reason}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "{line} missing");
    }
    let welcome = raw_connect(node.port, "", Some(json!({ "token": good(json!({})) }))).await;
    assert!(welcome.starts_with("40"), "a good token connects: {welcome}");
    eventually("nobody refused was ever counted (the good one left)", CONVERGE, || async {
        node.presence().await["connections"] == 0
    })
    .await;
    // A token near 8 KiB fits in the handshake over long-polling too, whatever max_payload says.
    let big = good(json!({ "padding": "x".repeat(5900) }));
    assert!(big.len() > 7500 && big.len() <= 8192, "{}", big.len());
    let polling = try_connect_with(&node.url(), TransportType::Polling, Some(json!({ "token": big }))).await;
    let polling = polling.expect("a big token connects over polling");
    eventually("the big-token client is counted", CONVERGE, || async {
        node.presence().await["connections"] == 1
    })
    .await;
    polling.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_with_tabs_on_two_nodes_is_one_user_until_the_last_tab() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("tabs");
    let mut settings: std::collections::HashMap<String, String> = node_env(Some(&redis.url()), &prefix, "a");
    settings.extend(
        signed(&[("ROLLCALL_AUTH", "optional")]).iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let a = ProcessNode::start(settings.clone()).await;
    settings.insert("ROLLCALL_NODE_ID".into(), "b".into());
    let b = ProcessNode::start(settings).await;
    let alice = token("alice", 600, json!({ "info": { "name": "Alice" } }));
    let tab1 = connect_as(&a.url(), &alice, &["doc"]).await;
    let _tab2 = connect_as(&b.url(), &alice, &["doc"]).await;
    let anonymous = try_connect_with(&b.url(), TransportType::Websocket, Some(json!({ "rooms": ["doc"] })))
        .await
        .expect("anonymous allowed when optional");
    eventually("2 users, 3 connections in doc", CONVERGE, || async { tab1.room_last("doc") == Some((2, 3)) })
        .await;
    let doc = presence(&a.url()).await;
    assert_eq!((doc["connections"].as_i64(), doc["unique_users"].as_i64()), (Some(3), Some(2)), "{doc}");
    assert_eq!(doc["users"], 3, "refresh users keeps counting connections by default");
    b.signal("KILL").await;
    let killed = Instant::now();
    eventually("alice stays while a tab lives", CONVERGE, || async { tab1.room_last("doc") == Some((1, 1)) })
        .await;
    eprintln!("MEASURED a killed node's tabs and users left the room: {} ms", killed.elapsed().as_millis());
    drop(anonymous);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expires_unless_refreshed_with_the_same_sub() {
    let node = spawn_node(None, &unique_prefix("expiry"), "n", &signed(&[])).await;
    let short = connect_as(&node.url(), &token("bob", 2, json!({})), &[]).await;
    let renewed = connect_as(&node.url(), &token("carol", 2, json!({})), &[]).await;
    eventually("both counted", CONVERGE, || async { node.presence().await["connections"] == 2 }).await;
    let stranger = renewed.ask("token", json!(token("mallory", 600, json!({})))).await;
    assert_eq!(stranger["ok"], false, "another sub is refused: {stranger}");
    let fresh = renewed.ask("token", json!(token("carol", 600, json!({})))).await;
    assert_eq!(fresh["ok"], true, "{fresh}");
    assert!(fresh["exp"].as_u64().is_some_and(|exp| exp > now() + 500));
    let expired = Instant::now();
    eventually("bob's socket is closed at exp", CONVERGE, || async {
        node.presence().await["connections"] == 1
    })
    .await;
    eprintln!(
        "MEASURED an expired token's socket closed {} ms after the test saw both",
        expired.elapsed().as_millis()
    );
    assert_eq!(renewed.ask("join", json!("still-here")).await["ok"], true, "carol is still connected");
    drop(short);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_listed_and_followed_across_three_nodes_up_to_the_cap() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("members");
    let settings = signed(&[("ROLLCALL_MAX_MEMBERS_LISTED", "3")]);
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(spawn_node(Some(&redis.url()), &prefix, id, &settings).await);
    }
    let watcher = connect_as(&nodes[0].url(), &token("watcher", 600, json!({})), &[]).await;
    let ack = watcher.ask("join", json!({ "room": "team", "members": true })).await;
    assert_eq!(ack["members"].as_array().map(Vec::len), Some(1), "{ack}");
    assert_eq!(ack["truncated"], false);
    let dana =
        connect_as(&nodes[1].url(), &token("dana", 600, json!({ "info": { "name": "Dana" } })), &["team"])
            .await;
    let erin = connect_as(&nodes[2].url(), &token("erin", 600, json!({})), &["team"]).await;
    let joined = |user: &str| (true, "team".to_owned(), user.to_owned());
    eventually("member joined for dana and erin", CONVERGE, || async {
        let changes = watcher.member_changes();
        changes.contains(&joined("dana")) && changes.contains(&joined("erin"))
    })
    .await;
    let second_tab = connect_as(&nodes[2].url(), &token("dana", 600, json!({})), &["team"]).await;
    eventually("dana's second tab is counted", CONVERGE, || async {
        watcher.room_last("team") == Some((3, 4))
    })
    .await;
    dana.disconnect().await;
    eventually("3 users, 3 connections", CONVERGE, || async { watcher.room_last("team") == Some((3, 3)) })
        .await;
    assert!(
        !watcher.member_changes().contains(&(false, "team".to_owned(), "dana".to_owned())),
        "dana still has a tab"
    );
    second_tab.disconnect().await;
    eventually("member left for dana's last tab", CONVERGE, || async {
        watcher.member_changes().contains(&(false, "team".to_owned(), "dana".to_owned()))
    })
    .await;
    let page: Value = reqwest::get(format!("{}/api/rooms/team/members?limit=1", nodes[1].url()))
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(page["members"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["next"], "erin", "paged in user-id order");
    // Above the cap only counts flow.
    let mut crowd = Vec::new();
    for user in ["f", "g", "h"] {
        crowd.push(connect_as(&nodes[1].url(), &token(user, 600, json!({})), &["team"]).await);
    }
    eventually("5 users", CONVERGE, || async { watcher.room_last("team") == Some((5, 5)) }).await;
    let late = connect_as(&nodes[0].url(), &token("late", 600, json!({})), &[]).await;
    let ack = late.ask("join", json!({ "room": "team", "members": true })).await;
    assert_eq!(ack["truncated"], true, "{ack}");
    assert_eq!(ack["members"].as_array().map(Vec::len), Some(3));
    drop((erin, crowd));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_holds_over_the_cluster() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("limit");
    let settings = signed(&[("ROLLCALL_MAX_CONNECTIONS_PER_USER", "2")]);
    let a = spawn_node(Some(&redis.url()), &prefix, "a", &settings).await;
    let b = spawn_node(Some(&redis.url()), &prefix, "b", &settings).await;
    let frank = token("frank", 600, json!({}));
    let _one = connect_as(&a.url(), &frank, &[]).await;
    let _two = connect_as(&b.url(), &frank, &[]).await;
    eventually("both written", CONVERGE, || async { a.presence().await["connections"] == 2 }).await;
    let third = raw_connect(a.port, "", Some(json!({ "token": frank }))).await;
    assert!(third.contains("already has 2 connections"), "{third}");
    let other = raw_connect(b.port, "", Some(json!({ "token": token("grace", 60, json!({})) }))).await;
    assert!(other.starts_with("40"), "another user is fine: {other}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_the_api_and_presence_can_stay_public() {
    let keys = [("ROLLCALL_API_KEYS", "k-one,k-two"), ("ROLLCALL_PUBLIC_PRESENCE", "false")];
    let closed = spawn_node(None, &unique_prefix("keys"), "n", &keys).await;
    let open = spawn_node(None, &unique_prefix("nokeys"), "m", &[]).await;
    let http = reqwest::Client::new();
    for path in ["/api/rooms", "/api/rooms/x", "/api/rooms/x/members", "/api/presence"] {
        let denied = http.get(format!("{}{path}", closed.url())).send().await.expect("GET");
        assert_eq!(denied.status(), 401, "{path}");
        let body: Value = denied.json().await.expect("json error");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("API key")), "{path}: {body}");
        let wrong =
            http.get(format!("{}{path}", closed.url())).bearer_auth("k-three").send().await.expect("GET");
        assert_eq!(wrong.status(), 401, "{path}");
        let right =
            http.get(format!("{}{path}", closed.url())).bearer_auth("k-two").send().await.expect("GET");
        assert_eq!(right.status(), 200, "{path}");
        assert_eq!(
            http.get(format!("{}{path}", open.url())).send().await.expect("GET").status(),
            200,
            "{path} open"
        );
    }
    for public in ["/", "/healthz", "/readyz", "/metrics", "/socket.io/socket.io.js"] {
        assert_eq!(
            http.get(format!("{}{public}", closed.url())).send().await.expect("GET").status(),
            200,
            "{public}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_count_users_counts_people_in_refresh_users() {
    let node =
        spawn_node(None, &unique_prefix("people"), "n", &signed(&[("ROLLCALL_GLOBAL_COUNT", "users")])).await;
    let heidi = token("heidi", 600, json!({}));
    let tabs = [connect_as(&node.url(), &heidi, &[]).await, connect_as(&node.url(), &heidi, &[]).await];
    let ivan = connect_as(&node.url(), &token("ivan", 600, json!({})), &[]).await;
    eventually("refresh users says 2 people", CONVERGE, || async {
        tabs.iter().chain([&ivan]).all(|c| c.last() == Some(2))
    })
    .await;
    let doc = node.presence().await;
    assert_eq!((doc["users"].as_i64(), doc["connections"].as_i64()), (Some(2), Some(3)), "{doc}");
}
