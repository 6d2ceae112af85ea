//! The HTTP surface: page, client bundle, health, readiness, metrics.

use crate::helpers::{spawn_node, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_bundle_health_and_metrics_are_served() {
    let node = spawn_node(None, &unique_prefix("http"), "web", &[]).await;
    let page = reqwest::get(node.url()).await.expect("GET /").text().await.expect("body");
    assert!(page.contains("Hello world"), "{page}");
    assert!(page.contains("/socket.io/socket.io.js"));

    // Not following redirects: only a build without the embedded bundle redirects to the CDN.
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    for file in ["socket.io.js", "socket.io.min.js", "socket.io.min.js.map"] {
        let response = client
            .get(format!("{}/socket.io/{file}", node.url()))
            .header("Origin", "http://other.example")
            .send()
            .await
            .expect("bundle");
        assert_eq!(response.status(), 200, "{file}");
        let headers = response.headers();
        let content_type = headers["content-type"].to_str().expect("ascii");
        assert!(
            content_type.contains(if file.ends_with(".map") { "json" } else { "javascript" }),
            "{content_type}"
        );
        assert_eq!(headers["access-control-allow-origin"], "*");
        assert!(headers.contains_key("cache-control"));
        let body = response.text().await.expect("body");
        assert!(body.len() > 10_000, "{file} looks too small to be the real bundle");
    }

    assert_eq!(reqwest::get(format!("{}/healthz", node.url())).await.expect("healthz").status(), 200);
    assert_eq!(reqwest::get(format!("{}/readyz", node.url())).await.expect("readyz").status(), 200);
    let metrics =
        reqwest::get(format!("{}/metrics", node.url())).await.expect("metrics").text().await.expect("body");
    for name in [
        "rollcall_local_connections",
        "rollcall_cluster_users",
        "rollcall_connects_total",
        "rollcall_degraded",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_fed_on_its_own_namespace_and_is_not_counted() {
    use std::sync::{Arc, Mutex};

    use futures_util::FutureExt;
    use rust_socketio::{Payload, TransportType, asynchronous::ClientBuilder};

    use crate::helpers::{all_show, connect, eventually};

    let node = spawn_node(None, &unique_prefix("dashboard"), "dash", &[]).await;
    let page =
        reqwest::get(format!("{}/dashboard", node.url())).await.expect("GET").text().await.expect("body");
    assert!(page.contains("io(\"/dashboard\""), "the page uses its own namespace");
    let user = [connect(&node.url(), TransportType::Websocket).await];
    all_show(&user, 1).await;

    let snapshots: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = snapshots.clone();
    let dashboard = ClientBuilder::new(node.url())
        .namespace("/dashboard")
        .on("cluster", move |payload, _| {
            if let Payload::Text(values) = payload {
                sink.lock().expect("lock").extend(values);
            }
            async {}.boxed()
        })
        .connect()
        .await
        .expect("dashboard connects");
    eventually("two snapshots arrive", crate::helpers::CONVERGE, || async {
        snapshots.lock().expect("lock").len() >= 2
    })
    .await;
    let last = snapshots.lock().expect("lock").last().cloned().expect("a snapshot");
    assert_eq!(last["users"], 1, "the dashboard itself is not a user: {last}");
    assert_eq!(last["nodes"][0]["id"], "dash");
    assert!(last["at"].as_u64().is_some());
    assert_eq!(node.presence().await["users"], 1);
    let _ = dashboard.disconnect().await;
}
