//! `rollcall swarm` against two real nodes on a real Redis: its report must be right, for the
//! total and per room.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

use crate::helpers::{CONVERGE, RedisServer, TestNode, eventually, spawn_node, unique_prefix};

/// Starts `rollcall swarm ARGS` (bounded in time); its exit status and `--json` report.
fn start_swarm(args: &[&str]) -> JoinHandle<(std::process::ExitStatus, Value)> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollcall"));
    command.arg("swarm").args(args).kill_on_drop(true);
    tokio::spawn(async move {
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("swarm stops by itself")
            .expect("run swarm");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "--json prints one JSON object ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status, report)
    })
}

async fn run_swarm(args: &[&str]) -> (std::process::ExitStatus, Value) {
    start_swarm(args).await.expect("swarm task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_burst_against_two_nodes_reports_exact_convergence() {
    let (_redis, a, b) = two_nodes("swarm").await;
    let (status, report) = run_swarm(&[
        "--url",
        &a.url(),
        "--url",
        &b.url(),
        "--clients",
        "200",
        "--rate",
        "400",
        "--scenario",
        "burst",
        "--workers",
        "2",
        "--json",
    ])
    .await;
    assert!(status.success(), "exit {status}: {report:#}");
    assert_eq!(report["scenario"], "burst");
    assert_eq!(report["clients"], 200);
    assert_eq!(report["connects_ok"], 200, "{report:#}");
    assert_eq!(report["connect_errors"], 0);
    assert_eq!(report["peak_connected"], 200);
    assert_eq!(report["true_users"], 200, "the truth read from /api/presence at the end of the burst");
    assert_eq!(report["converged"], true);
    assert_eq!(report["stale"], 0);
    assert!(report["convergence_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert!(report["refresh_messages_per_client"]["mean"].as_f64().is_some_and(|m| m >= 1.0));
    // Burst disconnects everyone at the end: the nodes are back to zero.
    assert_eq!(a.presence().await["users"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_an_error_not_a_hang() {
    let port = crate::helpers::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (status, report) = run_swarm(&[
        "--url",
        &url,
        "--clients",
        "20",
        "--connect-timeout",
        "2s",
        "--settle-timeout",
        "2s",
        "--json",
    ])
    .await;
    assert!(!status.success());
    assert_eq!(report["connects_ok"], 0);
    assert!(report["connect_errors"].as_u64().is_some_and(|n| n > 0), "{report:#}");
}

/// `GET <base>/api/rooms?prefix=..&limit=1000`: room → connections (one page is enough here).
async fn listed_rooms(base: &str, prefix: &str) -> BTreeMap<String, i64> {
    let page: Value = reqwest::Client::new()
        .get(format!("{base}/api/rooms"))
        .query(&[("prefix", prefix), ("limit", "1000")])
        .send()
        .await
        .expect("GET /api/rooms")
        .json()
        .await
        .expect("json");
    assert!(page["next"].is_null(), "one page: {page}");
    let rooms = page["rooms"].as_array().expect("rooms");
    rooms
        .iter()
        .map(|room| {
            (room["room"].as_str().expect("room").to_owned(), room["connections"].as_i64().expect("n"))
        })
        .collect()
}

async fn two_nodes(test: &str) -> (RedisServer, TestNode, TestNode) {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix(test);
    let a = spawn_node(Some(&redis.url()), &prefix, "a", &[]).await;
    let b = spawn_node(Some(&redis.url()), &prefix, "b", &[]).await;
    (redis, a, b)
}

/// Every room converged, none stale, no count off, the totals right.
fn assert_rooms_converged(report: &Value, clients: i64) {
    let rooms = &report["rooms"];
    assert_eq!(rooms["converged"], true, "{rooms:#}");
    assert_eq!(
        (rooms["stale_rooms"].as_u64(), rooms["stale_clients"].as_u64()),
        (Some(0), Some(0)),
        "{rooms:#}"
    );
    assert_eq!(
        (rooms["count_mismatches"].as_u64(), rooms["truth_disagreements"].as_u64()),
        (Some(0), Some(0))
    );
    let with_clients = rooms["rooms_with_clients"].as_u64().expect("rooms_with_clients");
    assert_eq!(rooms["converged_rooms"].as_u64(), Some(with_clients), "{rooms:#}");
    assert!(rooms["convergence_ms"]["max"].as_f64().is_some_and(|ms| ms >= 0.0), "{rooms:#}");
    assert!(rooms["room_messages_per_client"]["mean"].as_f64().is_some_and(|m| m >= 1.0), "{rooms:#}");
    let truths = rooms["truths"].as_object().expect("truths");
    assert_eq!(
        truths.values().filter_map(Value::as_i64).sum::<i64>(),
        clients,
        "one room per client: {rooms:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_in_zipf_rooms_converge_per_room_and_the_truths_are_the_apis() {
    let (_redis, a, b) = two_nodes("swarm-rooms").await;
    let room_prefix = format!("{}-room-", unique_prefix("zipf"));
    let (url_a, url_b) = (a.url(), b.url());
    let holding = start_swarm(&[
        "--url",
        &url_a,
        "--url",
        &url_b,
        "--clients",
        "300",
        "--rate",
        "600",
        "--workers",
        "2",
        "--rooms",
        "30",
        "--room-distribution",
        "zipf",
        "--zipf-s",
        "1.0",
        "--room-prefix",
        &room_prefix,
        "--seed",
        "7",
        "--scenario",
        "hold",
        "--duration",
        "4s",
        "--json",
    ]);
    // While the swarm holds its clients, both nodes' API lists the same 300 in the rooms.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    eventually("both nodes list 300 clients in the swarm's rooms", CONVERGE, || {
        let (url_a, url_b, prefix, seen) = (url_a.clone(), url_b.clone(), room_prefix.clone(), seen.clone());
        async move {
            let (on_a, on_b) = (listed_rooms(&url_a, &prefix).await, listed_rooms(&url_b, &prefix).await);
            let total: i64 = on_a.values().sum();
            let agreed = total == 300 && on_a == on_b;
            *seen.lock().expect("lock") = on_a;
            agreed
        }
    })
    .await;
    let seen = seen.lock().expect("lock").clone();
    let (status, report) = holding.await.expect("swarm task");
    assert!(status.success(), "exit {status}: {report:#}");
    assert_eq!((report["scenario"].as_str(), report["connects_ok"].as_u64()), (Some("hold"), Some(300)));
    assert_eq!(report["converged"], true, "the total as before: {report:#}");
    assert_rooms_converged(&report, 300);
    let truths: BTreeMap<String, i64> =
        serde_json::from_value(report["rooms"]["truths"].clone()).expect("truths");
    assert_eq!(truths, seen, "the report's truths are what the API listed during the hold");
    let largest = seen.get(&format!("{room_prefix}0")).copied().unwrap_or(0);
    assert!(
        largest >= 30 && seen.values().all(|&count| count <= largest),
        "zipf: room 0 is the largest: {seen:?}"
    );
    assert_eq!(report["rooms"]["largest_room"].as_i64(), Some(largest));
    // Every client left at the end: the rooms are empty again.
    eventually("the swarm's rooms are empty", CONVERGE, || {
        let (url, prefix) = (url_a.clone(), room_prefix.clone());
        async move { listed_rooms(&url, &prefix).await.is_empty() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_clients_between_rooms_converges_per_room_with_every_move_acknowledged() {
    let (_redis, a, b) = two_nodes("swarm-move").await;
    let room_prefix = format!("{}-room-", unique_prefix("move"));
    let (status, report) = run_swarm(&[
        "--url",
        &a.url(),
        "--url",
        &b.url(),
        "--clients",
        "300",
        "--rate",
        "600",
        "--workers",
        "2",
        "--rooms",
        "30",
        "--room-prefix",
        &room_prefix,
        "--scenario",
        "move",
        "--move-rate",
        "100",
        "--duration",
        "3s",
        "--json",
    ])
    .await;
    assert!(status.success(), "exit {status}: {report:#}");
    assert_eq!(report["scenario"], "move");
    assert_rooms_converged(&report, 300);
    let moves = &report["rooms"]["moves"];
    assert!(moves["ok"].as_u64().is_some_and(|ok| ok >= 200), "about 300 moves in 3 s: {moves:#}");
    assert_eq!((moves["failed"].as_u64(), moves["attempted"].as_u64()), (Some(0), moves["ok"].as_u64()));
    assert!(report["rooms"]["seed"].is_u64());
    assert_eq!(report["errors"], serde_json::json!({}), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_room_flags_are_one_line_errors() {
    for (args, says) in [
        (&["--scenario", "move", "--rooms", "1"][..], "--rooms 2 or more"),
        (&["--rooms", "2000000"][..], "--rooms must be at most"),
        (&["--rooms", "3", "--zipf-s=-1"][..], "--zipf-s"),
        (&["--rooms", "3", "--room-prefix", "a\u{1}"][..], "--room-prefix"),
        (&["--users", "5"][..], "--users needs --jwt-secret"),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .args(["swarm", "--url", "http://127.0.0.1:9", "--clients", "1"])
            .args(args)
            .output()
            .await
            .expect("run swarm");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: a usage error: {stderr}");
        assert!(stderr.contains(says) && stderr.lines().count() == 1, "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sharing_identities_converge_on_unique_users_per_room_and_cluster_wide() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("swarm-users");
    let secret = crate::users::SECRET;
    let settings = [("ROLLCALL_AUTH", "required"), ("ROLLCALL_JWT_SECRET", secret)];
    let a = spawn_node(Some(&redis.url()), &prefix, "a", &settings).await;
    let b = spawn_node(Some(&redis.url()), &prefix, "b", &settings).await;
    // One person with two tabs is there before the swarm: the baselines.
    let before = crate::users::token("before", 600, serde_json::json!({}));
    let room_prefix = format!("{}-room-", unique_prefix("users"));
    let first_room = format!("{room_prefix}0");
    let tabs = [a.url(), b.url()].map(|url| {
        let auth = serde_json::json!({ "token": before, "rooms": [first_room] });
        async move {
            crate::helpers::try_connect_with(&url, rust_socketio::TransportType::Websocket, Some(auth)).await
        }
    });
    let tabs: Vec<_> = futures_util::future::join_all(tabs)
        .await
        .into_iter()
        .map(|tab| tab.expect("a tab connects"))
        .collect();
    eventually("the two tabs are one user", CONVERGE, || async { a.presence().await["unique_users"] == 1 })
        .await;
    let (status, report) = run_swarm(&[
        "--url",
        &a.url(),
        "--url",
        &b.url(),
        "--clients",
        "120",
        "--users",
        "24",
        "--jwt-secret",
        secret,
        "--rate",
        "400",
        "--workers",
        "2",
        "--rooms",
        "6",
        "--room-distribution",
        "uniform",
        "--room-prefix",
        &room_prefix,
        "--seed",
        "11",
        "--json",
    ])
    .await;
    assert!(status.success(), "exit {status}: {report:#}");
    assert_eq!((report["connects_ok"].as_u64(), report["connect_errors"].as_u64()), (Some(120), Some(0)));
    let users = &report["users"];
    assert_eq!(users["identities"], 24, "{users:#}");
    assert_eq!(users["swarm_users"], 24, "five tabs each, all connected: {users:#}");
    assert_eq!((users["baseline"].as_i64(), users["expected"].as_i64()), (Some(1), Some(25)), "{users:#}");
    assert_eq!((users["seen"].as_i64(), users["converged"].as_bool()), (Some(25), Some(true)), "{users:#}");
    assert!(users["convergence_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{users:#}");
    assert_eq!(report["true_users"], 122, "refresh users counts connections by default: {report:#}");
    assert_rooms_converged(&report, 122);
    let rooms = &report["rooms"];
    assert_eq!(rooms["user_count_mismatches"], 0, "{rooms:#}");
    let user_truths: BTreeMap<String, i64> =
        serde_json::from_value(rooms["user_truths"].clone()).expect("user_truths");
    let truths: BTreeMap<String, i64> = serde_json::from_value(rooms["truths"].clone()).expect("truths");
    assert_eq!(user_truths.values().sum::<i64>(), 25, "a user's tabs share one room: {rooms:#}");
    for (room, users) in &user_truths {
        let extra = if *room == first_room { 2 } else { 0 };
        assert_eq!((truths[room] - extra) % 5, 0, "{room}: whole users of five tabs: {rooms:#}");
        assert_eq!(truths[room] - extra, (users - extra / 2) * 5, "{room}: five tabs per user: {rooms:#}");
    }
    drop(tabs);
}

/// The soak benchmark's short CI variant: clients held while some reconnect and move, the RSS
/// of the nodes' process sampled; the count must be exact at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_reconnects_and_moves_samples_rss_and_ends_exact() {
    let (_redis, a, b) = two_nodes("swarm-soak").await;
    let room_prefix = format!("{}-room-", unique_prefix("soak"));
    // The nodes run inside this test process: its RSS is theirs.
    let pid = std::process::id().to_string();
    let (status, report) = run_swarm(&[
        "--url",
        &a.url(),
        "--url",
        &b.url(),
        "--clients",
        "200",
        "--rate",
        "400",
        "--workers",
        "2",
        "--rooms",
        "10",
        "--room-prefix",
        &room_prefix,
        "--scenario",
        "soak",
        "--churn-rate",
        "40",
        "--move-rate",
        "40",
        "--duration",
        "5s",
        "--sample-interval",
        "1s",
        "--warmup",
        "1s",
        "--rss-pid",
        &pid,
        "--json",
    ])
    .await;
    assert!(status.success(), "exit {status}: {report:#}");
    assert_eq!(report["scenario"], "soak");
    assert_eq!(report["true_users"], 200, "exact at the end: {report:#}");
    assert_eq!((report["stale"].as_u64(), report["dropped"].as_u64()), (Some(0), Some(0)));
    assert!(report["churn_reconnects"].as_u64().is_some_and(|n| n >= 80), "about 40/s for 4 s: {report:#}");
    let soak = &report["soak"];
    assert!(soak["moves_ok"].as_u64().is_some_and(|n| n >= 10), "moves in each slice: {soak:#}");
    let samples = soak["samples"].as_array().expect("samples");
    assert!(samples.len() >= 5, "one sample per second plus the first: {soak:#}");
    assert!(samples.iter().all(|s| s["rss_kib"][0].as_u64().is_some_and(|kib| kib > 0)), "{soak:#}");
    assert!(soak["slope_kib_per_min"][0].is_f64(), "a slope after the warm-up: {soak:#}");
    assert_rooms_converged(&report, 200);
}

/// `--transport polling`: every client opens its session by long-polling and upgrades to
/// WebSocket, as the official client does; the node counts each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_then_upgrade_clients_connect_and_converge() {
    let (_redis, a, b) = two_nodes("swarm-polling").await;
    let (status, report) = run_swarm(&[
        "--url",
        &a.url(),
        "--url",
        &b.url(),
        "--clients",
        "100",
        "--rate",
        "200",
        "--scenario",
        "hold",
        "--duration",
        "2s",
        "--transport",
        "polling",
        "--json",
    ])
    .await;
    assert!(status.success(), "exit {status}: {report:#}");
    assert_eq!(
        (report["connects_ok"].as_u64(), report["dropped"].as_u64()),
        (Some(100), Some(0)),
        "{report:#}"
    );
    assert_eq!(report["true_users"], 100);
    assert_eq!(report["stale"], 0);
    assert_eq!(a.presence().await["users"], 0, "all left at the end");
}
