//! The count heals: crashed nodes, lost Redis, outages, partitions, graceful drain, rolling
//! restarts. Each test waits for exact convergence with a deadline and prints how long it took
//! (`MEASURED ...` lines; the numbers are reported, not asserted).

use std::time::{Duration, Instant};

use rust_socketio::TransportType;

use crate::helpers::{
    CONVERGE, ProcessNode, RedisServer, TcpProxy, TestClient, all_show, connect, connect_many,
    connect_reconnecting, eventually, node_env, presence, spawn_node, unique_prefix,
};

fn measured(what: &str, since: Instant) {
    eprintln!("MEASURED {what}: {} ms", since.elapsed().as_millis());
}

/// `rollcall_redis_errors_total{operation="flush"}` of a node.
async fn write_failures(base: &str) -> f64 {
    let metrics = reqwest::get(format!("{base}/metrics")).await.expect("metrics").text().await.expect("text");
    metrics
        .lines()
        .find(|l| l.starts_with("rollcall_redis_errors_total{operation=\"flush\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn degraded(base: &str) -> bool {
    presence(base).await["degraded"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_is_reaped_and_survivors_show_the_truth() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("crash");
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(ProcessNode::start(node_env(Some(&redis.url()), &prefix, id)).await);
    }
    let mut per_node: Vec<Vec<TestClient>> = Vec::new();
    for node in &nodes {
        per_node.push(connect_many(&[node.url()], 20, TransportType::Websocket).await);
    }
    for clients in &per_node {
        all_show(clients, 60).await;
    }
    nodes[2].signal("KILL").await;
    let crashed = Instant::now();
    let survivors: Vec<&TestClient> = per_node[..2].iter().flatten().collect();
    eventually("survivors' clients show 40", CONVERGE, || async {
        survivors.iter().all(|c| c.last() == Some(40))
    })
    .await;
    measured("heal after SIGKILL of one of three nodes (default node_ttl_ms)", crashed);
    // The node list is the one of the node's last write: at most one heartbeat behind.
    eventually("the dead node is gone from the node list", CONVERGE, || async {
        presence(&nodes[0].url()).await["nodes"].as_array().map(Vec::len) == Some(2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_reseeded_by_the_nodes() {
    let mut redis = RedisServer::start().await;
    let prefix = unique_prefix("restart");
    let nodes = [
        spawn_node(Some(&redis.url()), &prefix, "a", &[]).await,
        spawn_node(Some(&redis.url()), &prefix, "b", &[]).await,
        spawn_node(Some(&redis.url()), &prefix, "c", &[]).await,
    ];
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let clients = connect_many(&urls, 45, TransportType::Websocket).await;
    all_show(&clients, 45).await;
    let port = redis.port;
    redis.kill().await;
    let redis = RedisServer::start_on(port).await;
    let back = Instant::now();
    eventually("Redis holds the re-seeded total", CONVERGE, || async {
        redis.global_connections(&prefix).await == Some(45)
    })
    .await;
    all_show(&clients, 45).await;
    measured("heal after Redis restarted empty (from Redis accepting connections)", back);
    for url in &urls {
        eventually("no node is degraded", CONVERGE, || async { !degraded(url).await }).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_is_detected_and_reseeded() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("flush");
    let a = spawn_node(Some(&redis.url()), &prefix, "a", &[]).await;
    let b = spawn_node(Some(&redis.url()), &prefix, "b", &[]).await;
    let clients = connect_many(&[a.url(), b.url()], 30, TransportType::Websocket).await;
    all_show(&clients, 30).await;
    let _: String = redis.cmd(&["FLUSHALL"]).await;
    let flushed = Instant::now();
    eventually("Redis holds the re-seeded total", CONVERGE, || async {
        redis.global_connections(&prefix).await == Some(30)
    })
    .await;
    measured("heal after FLUSHALL", flushed);
    // A change after the re-seed reaches everyone: the version kept growing past the loss.
    let newcomer = connect(&b.url(), TransportType::Websocket).await;
    let mut all = clients;
    all.push(newcomer);
    all_show(&all, 31).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_redis_outage_nodes_serve_local_changes_and_reconcile_after() {
    let mut redis = RedisServer::start().await;
    let prefix = unique_prefix("outage");
    let a = spawn_node(Some(&redis.url()), &prefix, "a", &[]).await;
    let b = spawn_node(Some(&redis.url()), &prefix, "b", &[]).await;
    let on_a = connect_many(&[a.url()], 10, TransportType::Websocket).await;
    let mut on_b = connect_many(&[b.url()], 10, TransportType::Websocket).await;
    all_show(&on_a, 20).await;
    all_show(&on_b, 20).await;

    let port = redis.port;
    redis.kill().await;
    let outage = Instant::now();
    eventually("node a notices the outage", CONVERGE, || async { degraded(&a.url()).await }).await;
    measured("time to mark a node degraded after Redis died", outage);
    assert_eq!(
        reqwest::get(format!("{}/readyz", a.url())).await.expect("readyz").status(),
        200,
        "stays ready"
    );
    // Clients keep coming and going; each node shows the last total adjusted by its own changes.
    let mut on_a = on_a;
    on_a.extend(connect_many(&[a.url()], 5, TransportType::Websocket).await);
    for client in on_b.drain(..3) {
        client.disconnect().await;
    }
    all_show(&on_a, 25).await;
    all_show(&on_b, 17).await;

    let redis = RedisServer::start_on(port).await;
    let back = Instant::now();
    all_show(&on_a, 22).await;
    all_show(&on_b, 22).await;
    measured("reconcile after a Redis outage (from Redis accepting connections)", back);
    eventually("degraded clears", CONVERGE, || async {
        !degraded(&a.url()).await && !degraded(&b.url()).await
    })
    .await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_is_reaped_then_puts_its_share_back() {
    let redis = RedisServer::start().await;
    let proxy = TcpProxy::start(redis.port).await;
    let prefix = unique_prefix("partition");
    let a = spawn_node(Some(&redis.url()), &prefix, "a", &[]).await;
    let b = spawn_node(Some(&redis.url()), &prefix, "b", &[]).await;
    let c = spawn_node(Some(&proxy.url()), &prefix, "c", &[]).await;
    let on_ab = connect_many(&[a.url(), b.url()], 20, TransportType::Websocket).await;
    let on_c = connect_many(&[c.url()], 10, TransportType::Websocket).await;
    all_show(&on_ab, 30).await;
    all_show(&on_c, 30).await;

    proxy.cut();
    let cut = Instant::now();
    // The others cannot tell a partition from a crash: after node_ttl_ms, c's users are gone.
    all_show(&on_ab, 20).await;
    measured("partitioned node's share reaped by the others", cut);
    eventually("node c knows it is cut off", CONVERGE, || async { degraded(&c.url()).await }).await;
    all_show(&on_c, 30).await;

    proxy.restore();
    let healed = Instant::now();
    all_show(&on_ab, 30).await;
    all_show(&on_c, 30).await;
    measured("partitioned node's share restored after the partition healed", healed);
    let shares = redis.shares(&prefix).await;
    let sum: i64 = shares.iter().map(|(_, sockets)| sockets).sum();
    assert_eq!(sum, 30, "never counted twice: {shares:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_gives_back_the_share_at_once_and_exits_in_time() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("sigterm");
    // A TTL far beyond the convergence deadline: only the explicit give-back can pass this test.
    let mut env = node_env(Some(&redis.url()), &prefix, "stays");
    env.insert("ROLLCALL_NODE_TTL_MS".into(), "120000".into());
    let stays = ProcessNode::start(env.clone()).await;
    env.insert("ROLLCALL_NODE_ID".into(), "leaves".into());
    let mut leaves = ProcessNode::start(env).await;
    let staying = connect_many(&[stays.url()], 10, TransportType::Websocket).await;
    let _leaving = connect_many(&[leaves.url()], 10, TransportType::Websocket).await;
    all_show(&staying, 20).await;

    leaves.signal("TERM").await;
    let term = Instant::now();
    let status = leaves.wait_exit(Duration::from_secs(10)).await;
    measured("SIGTERM to process exit", term);
    assert!(status.success(), "clean exit: {status}");
    all_show(&staying, 10).await;
    measured("SIGTERM until the other node's clients show the drop", term);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_ends_with_the_exact_count() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("rolling");
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(ProcessNode::start(node_env(Some(&redis.url()), &prefix, id)).await);
    }
    let mut clients = Vec::new();
    for i in 0..120 {
        clients.push(connect_reconnecting(&nodes[i % 3].url()).await);
    }
    all_show(&clients, 120).await;
    let started = Instant::now();
    for i in 0..3 {
        let (port, id) = (nodes[i].port, ["a", "b", "c"][i]);
        let before: Vec<usize> = clients.iter().map(|c| c.values().len()).collect();
        nodes[i].signal("TERM").await;
        nodes[i].wait_exit(Duration::from_secs(10)).await;
        nodes[i] = ProcessNode::start_on(port, node_env(Some(&redis.url()), &prefix, id)).await;
        let restarted = &nodes[i];
        eventually("the restarted node's clients are back on it", CONVERGE, || async {
            presence(&restarted.url()).await["local"] == 40
        })
        .await;
        // Its clients were greeted again after reconnecting: their 120 is fresh, not a leftover.
        let greeted_again =
            || clients.iter().zip(&before).skip(i).step_by(3).all(|(c, &n)| c.values().len() > n);
        eventually("reconnected clients got a fresh count", CONVERGE, || async { greeted_again() }).await;
        all_show(&clients, 120).await;
    }
    measured("rolling restart of three nodes with 120 reconnecting clients", started);
    for node in &nodes {
        assert_eq!(presence(&node.url()).await["users"], 120);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_reached_redis_shows_no_number_until_it_does() {
    let port = crate::helpers::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = unique_prefix("never");
    // Ready while Redis is down: an outage must not take a whole fleet out of its load balancer.
    let node = spawn_node(Some(&url), &prefix, "early", &[]).await;
    let presence_before = node.presence().await;
    assert_eq!(presence_before["users"], serde_json::Value::Null, "{presence_before}");
    assert_eq!(presence_before["degraded"], true);
    let client = connect(&node.url(), TransportType::Websocket).await;
    eventually("the node counts its client", CONVERGE, || async { node.presence().await["local"] == 1 })
        .await;
    // Let the node fail two more writes with the client connected: still nothing to show.
    let failed = write_failures(&node.url()).await;
    eventually("two more failed writes", CONVERGE, || async {
        write_failures(&node.url()).await >= failed + 2.0
    })
    .await;
    assert_eq!(client.last(), None, "no number without an authoritative total");

    let _redis = RedisServer::start_on(port).await;
    let back = Instant::now();
    all_show(&[client], 1).await;
    measured("first count after Redis became reachable", back);
    assert_eq!(node.presence().await["users"], 1);
}
