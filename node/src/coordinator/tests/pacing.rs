//! Adaptive pacing: a node whose event loop lags stretches its broadcasts on its own, and comes
//! back to the emit interval once calm; the last value always goes out.

use super::*;

/// Joins one socket every 20 ms for `length`, from socket id `first`; returns the next id.
async fn churn(node: &Node, first: u64, length: Duration) -> u64 {
    let started = Instant::now();
    let mut socket = first;
    while started.elapsed() < length {
        node.join(socket);
        socket += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    socket
}

/// Milliseconds between consecutive broadcasts that started within `from..to`.
fn gaps(node: &Node, from: Instant, to: Instant) -> Vec<u128> {
    let times: Vec<Instant> =
        node.broadcasts().into_iter().map(|(at, _)| at).filter(|at| *at >= from && *at < to).collect();
    times.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_lagging_node_stretches_its_broadcasts_and_comes_back_when_calm() {
    let backend = Arc::new(FaultyBackend::default());
    let node = Node::start("a", &backend, TIMING);
    until("registered", SOON, || node.shown() == Some(0)).await;

    // Each broadcast keeps the loop busy for 300 ms: without the governor one would start every
    // 400 ms (300 ms + the 100 ms emit interval), using three quarters of the loop.
    *node.clients.broadcast_delay.lock().expect("lock") = Duration::from_millis(300);
    let lagging = Instant::now();
    let next = churn(&node, 0, Duration::from_secs(6)).await;
    let stretched = gaps(&node, lagging + Duration::from_secs(3), Instant::now());
    assert!(!stretched.is_empty(), "still broadcasting while lagging");
    assert!(stretched.iter().all(|&gap| gap >= 700), "backed off to ≥ 700 ms: {stretched:?}");
    assert!(node.metrics.emits_deferred.get() > 0, "deferred emits are counted");
    assert!(node.metrics.fanout_interval.get() >= 0.5, "interval {}", node.metrics.fanout_interval.get());

    // Fast again: within a few half-lives the emit interval is back to 100 ms.
    *node.clients.broadcast_delay.lock().expect("lock") = Duration::ZERO;
    let calm = Instant::now();
    churn(&node, next, Duration::from_secs(6)).await;
    let relaxed = gaps(&node, calm + Duration::from_secs(5), Instant::now());
    assert!(!relaxed.is_empty() && relaxed.iter().all(|&gap| gap <= 130), "back to 100 ms: {relaxed:?}");
    assert!((node.metrics.fanout_interval.get() - 0.1).abs() < 1e-9);

    let total = node.shown().expect("a count");
    until("the last value goes out", SOON, || node.broadcasts().last().map(|b| b.1) == Some(total)).await;
}
