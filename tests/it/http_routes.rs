//! The HTTP surface: page, client bundle, health, readiness, metrics.

use crate::helpers::{spawn_node, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_bundle_health_and_metrics_are_served() {
    let node = spawn_node(None, &unique_prefix("http"), "web", &[]).await;
    let page = reqwest::get(node.url()).await.expect("GET /").text().await.expect("body");
    assert!(page.contains("Hello world"), "{page}");
    assert!(page.contains("/socket.io/socket.io.js"));

    let client = reqwest::Client::new();
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
async fn without_a_local_bundle_the_node_redirects_to_the_cdn() {
    let node =
        spawn_node(None, &unique_prefix("cdn"), "web", &[("ROLLCALL_CLIENT_BUNDLE_DIR", "/nonexistent")])
            .await;
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let response = client.get(format!("{}/socket.io/socket.io.js", node.url())).send().await.expect("bundle");
    assert!(response.status().is_redirection());
    assert_eq!(response.headers()["location"], "https://cdn.socket.io/4.8.1/socket.io.js");
}
