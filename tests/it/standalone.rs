//! Standalone mode: one node, no Redis, the count in memory.

use rust_socketio::TransportType;

use crate::helpers::{CONVERGE, all_show, connect, eventually, spawn_node, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_one_to_fifty_and_back_down() {
    let node = spawn_node(None, &unique_prefix("standalone"), "solo", &[]).await;
    let mut clients = Vec::new();
    for expected in 1..=50 {
        let client = connect(&node.url(), TransportType::Websocket).await;
        eventually("the newcomer is greeted with the count including itself", CONVERGE, || async {
            client.values().first() == Some(&expected)
        })
        .await;
        clients.push(client);
        all_show(&clients, expected).await;
    }
    for expected in (30..50).rev() {
        clients.pop().expect("a client").disconnect().await;
        all_show(&clients, expected).await;
    }
    let presence = node.presence().await;
    assert_eq!(presence["mode"], "standalone");
    assert_eq!(presence["users"], 30);
    assert_eq!(presence["local"], 30);
    assert_eq!(presence["node"], "solo");
    assert_eq!(presence["degraded"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_events_never_change_the_count() {
    let node = spawn_node(None, &unique_prefix("events"), "solo", &[]).await;
    let clients = vec![
        connect(&node.url(), TransportType::Websocket).await,
        connect(&node.url(), TransportType::Polling).await,
    ];
    all_show(&clients, 2).await;
    clients[0].emit("refresh users", serde_json::json!(999)).await;
    clients[1].emit("connection", serde_json::json!({"users": -5})).await;
    clients[0].emit("disconnect", serde_json::json!(null)).await;
    // A later real change must arrive as the next value: nothing in between moved the count.
    let third = connect(&node.url(), TransportType::Websocket).await;
    all_show(&clients, 3).await;
    for client in &clients {
        let values = client.values();
        let since_two = values.iter().skip_while(|&&v| v != 2);
        assert!(since_two.clone().all(|&v| v == 2 || v == 3), "the count moved: {values:?}");
    }
    assert_eq!(third.values().first(), Some(&3));
}
