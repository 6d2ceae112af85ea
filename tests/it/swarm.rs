//! `rollcall swarm` against two real nodes on a real Redis: its report must be right.

use std::time::Duration;

use crate::helpers::{RedisServer, spawn_node, unique_prefix};

async fn run_swarm(args: &[&str]) -> (std::process::ExitStatus, serde_json::Value) {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .arg("swarm")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("swarm stops by itself")
    .expect("run swarm");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("--json prints one JSON object ({e}): {stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    });
    (output.status, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_burst_against_two_nodes_reports_exact_convergence() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("swarm");
    let a = spawn_node(Some(&redis.url()), &prefix, "a", &[]).await;
    let b = spawn_node(Some(&redis.url()), &prefix, "b", &[]).await;
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
