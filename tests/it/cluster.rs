//! Three nodes on one real redis-server: every client on every node ends at the exact total.

use rust_socketio::TransportType;

use crate::helpers::{
    CONVERGE, RedisServer, TestNode, all_show, connect, connect_many, eventually, spawn_node, unique_prefix,
};

async fn three_nodes(redis: &RedisServer, prefix: &str) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(spawn_node(Some(&redis.url()), prefix, id, &[]).await);
    }
    nodes
}

fn urls(nodes: &[TestNode]) -> Vec<String> {
    nodes.iter().map(TestNode::url).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_spread_over_three_nodes_all_see_the_exact_total() {
    let redis = RedisServer::start().await;
    let nodes = three_nodes(&redis, &unique_prefix("spread")).await;
    let mut clients = connect_many(&urls(&nodes), 90, TransportType::Websocket).await;
    all_show(&clients, 90).await;
    for node in &nodes {
        let presence = node.presence().await;
        assert_eq!(presence["users"], 90);
        assert_eq!(presence["local"], 30);
        assert_eq!(presence["mode"], "redis");
        assert_eq!(presence["nodes"].as_array().map(Vec::len), Some(3), "cluster view: {presence}");
        // Every node heard announcements and timed them from the script's Redis clock.
        let metrics = node.metrics().await;
        let lag_samples = metrics
            .lines()
            .find_map(|l| l.strip_prefix("rollcall_announcement_lag_seconds_count "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        assert!(lag_samples.is_some_and(|n| n > 0), "announcement lag not recorded: {metrics}");
    }
    let leaving: Vec<_> = clients.drain(..30).collect();
    futures_util::future::join_all(leaving.into_iter().map(|c| c.disconnect())).await;
    all_show(&clients, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_and_mixed_transports_converge() {
    let redis = RedisServer::start().await;
    let nodes = three_nodes(&redis, &unique_prefix("polling")).await;
    let mut clients = connect_many(&urls(&nodes), 30, TransportType::Polling).await;
    all_show(&clients, 30).await;
    clients.extend(connect_many(&urls(&nodes), 15, TransportType::Websocket).await);
    clients.extend(connect_many(&urls(&nodes), 15, TransportType::Any).await);
    all_show(&clients, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_on_all_nodes_end_at_the_truth() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("concurrent");
    let nodes = three_nodes(&redis, &prefix).await;
    // All 150 handshakes race on all three nodes at once.
    let clients = connect_many(&urls(&nodes), 150, TransportType::Websocket).await;
    for client in &clients {
        assert!(
            client.values().iter().all(|&v| (1..=150).contains(&v)),
            "out of range: {:?}",
            client.values()
        );
    }
    all_show(&clients, 150).await;
    assert_eq!(redis.shares(&prefix).await.len(), 3, "one share per node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_gets_the_count_even_when_the_total_is_unchanged() {
    let redis = RedisServer::start().await;
    let nodes = three_nodes(&redis, &unique_prefix("newcomer")).await;
    let mut clients = connect_many(&urls(&nodes), 12, TransportType::Websocket).await;
    all_show(&clients, 12).await;
    // One leaves on node a while one arrives on node b: the total stays 12.
    let leaver = clients.remove(0);
    let url = nodes[1].url();
    let (newcomer, ()) = tokio::join!(connect(&url, TransportType::Websocket), leaver.disconnect());
    eventually("the newcomer receives refresh users", CONVERGE, || async { newcomer.last().is_some() }).await;
    clients.push(newcomer);
    all_show(&clients, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_right_after_it_arrives_is_not_left_behind() {
    let redis = RedisServer::start().await;
    let nodes = three_nodes(&redis, &unique_prefix("flaky")).await;
    let watcher = connect(&nodes[0].url(), TransportType::Websocket).await;
    for round in 0..20 {
        let node = &nodes[round % 3];
        let flaky = connect(&node.url(), TransportType::Websocket).await;
        flaky.disconnect().await;
    }
    let watchers = [watcher];
    all_show(&watchers, 1).await;
    for node in &nodes {
        eventually("every node reports 1", CONVERGE, || async { node.presence().await["users"] == 1 }).await;
    }
}
