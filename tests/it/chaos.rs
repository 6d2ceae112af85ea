//! Chaos with real addresses: nodes and Redis on network namespaces of their own (`netns::Lab`),
//! so partitions are real dropped links and process faults are real signals. Every test ends
//! with exact convergence (each node's `/api/presence` `users` and each live client's last
//! `refresh users` equal the truth the test knows) and prints `MEASURED ...` heal times. Where
//! the true count moves one way only, each client's values must move that way too: no client
//! sees an older count after a newer one.

mod churn;

use std::time::{Duration, Instant};

use rust_socketio::TransportType;

use crate::helpers::{CONVERGE, TestClient, connect, connect_many, eventually};
use crate::netns::Lab;

/// Fast timings, so each test takes seconds. The Engine.IO heartbeat lets a client stay silent
/// for 1 s + 5 s: longer than any pause below, so paused nodes keep their clients. Nodes log at
/// info (reaps, reconciliation), shown with the output of a failed test.
const SETTINGS: &[(&str, &str)] = &[
    ("ROLLCALL_LOG_LEVEL", "info"),
    ("ROLLCALL_NODE_TTL_MS", "1500"),
    ("ROLLCALL_HEARTBEAT_INTERVAL_MS", "300"),
    ("ROLLCALL_REDIS_TIMEOUT_MS", "300"),
    ("ROLLCALL_PING_INTERVAL_MS", "1000"),
    ("ROLLCALL_PING_TIMEOUT_MS", "5000"),
];
const NODE_TTL: Duration = Duration::from_millis(1500);
/// A live node's deadline is at least this far ahead: it wrote within a heartbeat (+ a flush tick
/// and the write's own latency, bounded generously by the slack).
const EARLIEST_REAP: Duration = Duration::from_millis(1500 - 300 - 100);
const REDIS_TIMEOUT: Duration = Duration::from_millis(300);
const HEARTBEAT: Duration = Duration::from_millis(300);
const PER_NODE: usize = 10;

fn measured(what: &str, since: Instant) {
    eprintln!("MEASURED {what}: {} ms", since.elapsed().as_millis());
}

/// Keeps a fault in place until `since` is `at_least` ago. This is the fault's duration, part of
/// the scenario; the test never sleeps to wait for an effect.
async fn hold_fault(since: Instant, at_least: Duration) {
    tokio::time::sleep(at_least.saturating_sub(since.elapsed())).await;
}

/// `/api/presence` of one node, or `None` if it does not answer within a few seconds.
async fn view(url: &str) -> Option<serde_json::Value> {
    let request = reqwest::get(format!("{url}/api/presence"));
    let response = tokio::time::timeout(Duration::from_secs(3), request).await.ok()?.ok()?;
    response.json().await.ok()
}

/// One of the node's own Prometheus metrics (served without asking Redis, so a cut-off node
/// answers at once).
async fn metric(url: &str, name: &str) -> Option<u64> {
    let request = reqwest::get(format!("{url}/metrics"));
    let response = tokio::time::timeout(Duration::from_secs(3), request).await.ok()?.ok()?;
    let text = response.text().await.ok()?;
    let line = text.lines().find(|l| l.split(' ').next().is_some_and(|n| n.starts_with(name)))?;
    line.rsplit(' ').next()?.parse().ok()
}

async fn degraded(url: &str) -> bool {
    metric(url, "rollcall_degraded").await == Some(1)
}

/// True when each node in `urls` shows `users` (and, if `settled`, is not degraded) and each
/// client's last value is `users`.
async fn everyone_shows(urls: &[String], clients: &[&TestClient], users: i64, settled: bool) -> bool {
    if !clients.iter().all(|c| c.last() == Some(users)) {
        return false;
    }
    for url in urls {
        let Some(v) = view(url).await else { return false };
        if v["users"] != users || (settled && v["degraded"] != false) {
            return false;
        }
    }
    true
}

/// Waits until every node of the lab and every client shows `truth`, no node degraded, and
/// Redis's shares add up to `truth` (nobody counted twice).
async fn exact_everywhere(lab: &Lab, clients: &[&TestClient], truth: i64) {
    let what = format!("all {} nodes and {} clients show exactly {truth}", lab.urls().len(), clients.len());
    let urls = lab.urls();
    eventually(&what, CONVERGE, || everyone_shows(&urls, clients, truth, true)).await;
    assert_eq!(shares_sum(lab).await, truth, "the shares in Redis add up to the truth");
}

/// Waits until `urls` and `clients` show `users` (degraded or not).
async fn all_show(what: &str, urls: &[String], clients: &[&TestClient], users: i64) {
    eventually(what, CONVERGE, || everyone_shows(urls, clients, users, false)).await;
}

async fn shares_sum(lab: &Lab) -> i64 {
    let fields: std::collections::HashMap<String, String> =
        lab.redis_cmd(&["HGETALL", &crate::helpers::global_key(lab.prefix())]).await;
    crate::helpers::node_shares(&fields).iter().map(|(_, sockets)| sockets).sum()
}

fn refs<'a>(groups: &[&'a [TestClient]]) -> Vec<&'a TestClient> {
    groups.iter().flat_map(|g| g.iter()).collect()
}

/// How many values each client has received so far: the start or end of a window.
fn marks(clients: &[TestClient]) -> Vec<usize> {
    clients.iter().map(|c| c.values().len()).collect()
}

/// Which way the true count moves in a window.
#[derive(Debug, Clone, Copy)]
enum Trend {
    Up,
    Down,
    Flat,
}

/// Asserts that each client's values from `from` (including the value it held then) to `to`
/// (or to now) move along `trend`.
fn assert_trend(clients: &[TestClient], from: &[usize], to: Option<&[usize]>, trend: Trend, what: &str) {
    for (i, client) in clients.iter().enumerate() {
        let values = client.values();
        let end = to.map_or(values.len(), |to| to[i]);
        let window = &values[from[i].saturating_sub(1)..end];
        let ok = window.windows(2).all(|w| match trend {
            Trend::Up => w[0] <= w[1],
            Trend::Down => w[0] >= w[1],
            Trend::Flat => w[0] == w[1],
        });
        assert!(
            ok,
            "{what}: client {i} saw {window:?} in a window where the truth moves {trend:?} (all: {values:?})"
        );
    }
}

async fn clients_per_node(lab: &Lab) -> Vec<Vec<TestClient>> {
    let mut per_node = Vec::new();
    for url in lab.urls() {
        per_node.push(connect_many(&[url], PER_NODE, TransportType::Websocket).await);
    }
    per_node
}

#[derive(Debug, Clone, Copy)]
enum Partition {
    /// `ip link set back down`: sends fail at once with "network unreachable".
    LinkDown,
    /// Every packet dropped silently: only `redis_timeout_ms` notices.
    Lossy,
}

/// Node n2 loses Redis for longer than `node_ttl_ms`: n0 and n1 reap its users; n2 goes degraded
/// and keeps serving (a newcomer sees itself); after healing its share comes back exactly once.
async fn a_partitioned_node_is_reaped_keeps_serving_and_comes_back_once(partition: Partition) {
    let test = match partition {
        Partition::LinkDown => "chaos-link-down",
        Partition::Lossy => "chaos-lossy-link",
    };
    let lab = Lab::start(test, 3, SETTINGS).await;
    let per_node = clients_per_node(&lab).await;
    let (others, cut_off) = (refs(&[&per_node[0], &per_node[1]]), &per_node[2]);
    exact_everywhere(&lab, &refs(&[&per_node[0], &per_node[1], cut_off]), 30).await;
    let before = per_node.iter().map(|g| marks(g)).collect::<Vec<_>>();

    match partition {
        Partition::LinkDown => lab.cut_back(2),
        Partition::Lossy => lab.lossy_back(2),
    }
    let cut = Instant::now();
    let (urls, n2) = (lab.urls(), lab.url(2));
    let reaped = async {
        all_show("n0, n1 and their clients drop n2's users", &urls[..2], &others, 20).await;
        measured(&format!("{partition:?} partition: n2's share reaped by the others"), cut);
        assert!(cut.elapsed() > EARLIEST_REAP, "reaped only once its deadline passed");
    };
    let noticed = async {
        eventually("n2 knows it is cut off", CONVERGE, || degraded(&n2)).await;
        measured(&format!("{partition:?} partition: n2 marked degraded"), cut);
    };
    tokio::join!(reaped, noticed);
    let newcomer = connect(&lab.url(2), TransportType::Websocket).await;
    let on_n2 = refs(&[cut_off, std::slice::from_ref(&newcomer)]);
    all_show("n2 keeps serving: its clients and a newcomer see 31", &lab.urls()[2..], &on_n2, 31).await;
    assert_eq!(view(&n2).await.expect("n2 answers")["degraded"], true, "n2 reports degraded: true");
    hold_fault(cut, NODE_TTL).await;
    let at_heal = per_node.iter().map(|g| marks(g)).collect::<Vec<_>>();

    match partition {
        Partition::LinkDown => lab.heal_back(2),
        Partition::Lossy => lab.heal_lossy_back(2),
    }
    let healed = Instant::now();
    exact_everywhere(
        &lab,
        &refs(&[&per_node[0], &per_node[1], cut_off, std::slice::from_ref(&newcomer)]),
        31,
    )
    .await;
    measured(&format!("{partition:?} partition: exact everywhere after healing"), healed);

    for node in 0..2 {
        assert_trend(&per_node[node], &before[node], Some(&at_heal[node]), Trend::Down, "while cut");
        assert_trend(&per_node[node], &at_heal[node], None, Trend::Up, "after healing");
    }
    assert_trend(cut_off, &before[2], Some(&at_heal[2]), Trend::Up, "n2 while cut");
    assert_trend(cut_off, &at_heal[2], None, Trend::Flat, "n2 after healing");
    assert_trend(std::slice::from_ref(&newcomer), &[0], None, Trend::Flat, "n2's newcomer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_link_down_longer_than_the_ttl_heals_exactly() {
    a_partitioned_node_is_reaped_keeps_serving_and_comes_back_once(Partition::LinkDown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_link_dropping_every_packet_heals_exactly() {
    a_partitioned_node_is_reaped_keeps_serving_and_comes_back_once(Partition::Lossy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_is_reaped_and_restored_after_sigcont_with_its_clients() {
    let lab = Lab::start("chaos-sigstop", 3, SETTINGS).await;
    let per_node = clients_per_node(&lab).await;
    let others = refs(&[&per_node[0], &per_node[1]]);
    let everyone = refs(&[&per_node[0], &per_node[1], &per_node[2]]);
    exact_everywhere(&lab, &everyone, 30).await;
    let before = per_node.iter().map(|g| marks(g)).collect::<Vec<_>>();

    lab.signal_node(2, "STOP");
    let stopped = Instant::now();
    all_show("n0, n1 and their clients drop the stopped node's users", &lab.urls()[..2], &others, 20).await;
    measured("SIGSTOP: the stopped node's share reaped by the others", stopped);
    assert!(stopped.elapsed() > EARLIEST_REAP, "reaped only once its deadline passed");
    hold_fault(stopped, NODE_TTL).await;
    let at_cont = per_node.iter().map(|g| marks(g)).collect::<Vec<_>>();

    lab.signal_node(2, "CONT");
    let resumed = Instant::now();
    exact_everywhere(&lab, &everyone, 30).await;
    measured("SIGCONT: exact everywhere after the stopped node resumed", resumed);
    let n2 = view(&lab.url(2)).await.expect("n2 answers");
    assert_eq!(n2["local"], PER_NODE, "n2's clients kept their connections through the pause");

    for node in 0..2 {
        assert_trend(&per_node[node], &before[node], Some(&at_cont[node]), Trend::Down, "while n2 stopped");
        assert_trend(&per_node[node], &at_cont[node], None, Trend::Up, "after SIGCONT");
    }
    assert_trend(&per_node[2], &before[2], None, Trend::Flat, "n2's own clients");
}

/// Redis stands still (SIGSTOP) for longer than `redis_timeout_ms` while clients come and go:
/// both nodes go degraded and adjust the last total by their own changes; after SIGCONT the
/// count is exact again.
async fn redis_paused_then_resumed(test: &str, pause: Pause) {
    let node_ttl = match pause {
        Pause::ShorterThanTtl => Duration::from_secs(5),
        Pause::LongerThanTtl => NODE_TTL,
    };
    let ttl_ms = node_ttl.as_millis().to_string();
    let mut settings: Vec<(&str, &str)> =
        SETTINGS.iter().filter(|(k, _)| *k != "ROLLCALL_NODE_TTL_MS").copied().collect();
    settings.push(("ROLLCALL_NODE_TTL_MS", &ttl_ms));
    let lab = Lab::start(test, 2, &settings).await;
    let mut per_node = clients_per_node(&lab).await;
    exact_everywhere(&lab, &refs(&[&per_node[0], &per_node[1]]), 20).await;
    let reaped_before = reaped_by_all(&lab).await;
    let before = per_node.iter().map(|g| marks(g)).collect::<Vec<_>>();

    lab.signal_redis("STOP");
    let paused = Instant::now();
    let urls = lab.urls();
    let noticed =
        urls.iter().map(|url| eventually("the node notices Redis is paused", CONVERGE, || degraded(url)));
    futures_util::future::join_all(noticed).await;
    measured(&format!("{test}: both nodes degraded"), paused);
    // Clients come and go: n0 gains 5, n1 loses 3. Each node adjusts the last total it knew.
    let joined = connect_many(&[lab.url(0)], 5, TransportType::Websocket).await;
    for client in per_node[1].drain(..3) {
        client.disconnect().await;
    }
    let stayed_on_n1 = before[1][3..].to_vec();
    all_show("n0 and its clients show 20 + 5", &lab.urls()[..1], &refs(&[&per_node[0], &joined]), 25).await;
    all_show("n1 and its clients show 20 - 3", &lab.urls()[1..], &refs(&[&per_node[1]]), 17).await;
    assert!(paused.elapsed() > REDIS_TIMEOUT, "paused longer than redis_timeout_ms");
    match pause {
        Pause::ShorterThanTtl => {
            assert!(paused.elapsed() < node_ttl - HEARTBEAT, "the pause must end before any deadline");
        }
        Pause::LongerThanTtl => hold_fault(paused, 2 * node_ttl).await,
    }
    let at_cont = per_node.iter().map(|g| marks(g)).collect::<Vec<_>>();
    let joined_at_cont = marks(&joined);

    lab.signal_redis("CONT");
    let resumed = Instant::now();
    exact_everywhere(&lab, &refs(&[&per_node[0], &per_node[1], &joined]), 22).await;
    measured(&format!("{test}: exact everywhere after Redis resumed"), resumed);
    // Both nodes kept trying all along; a pause of Redis itself is no reason to drop anyone.
    assert_eq!(reaped_by_all(&lab).await, reaped_before, "no live node was reaped because Redis stood still");

    assert_trend(&per_node[0], &before[0], Some(&at_cont[0]), Trend::Up, "n0 while Redis paused");
    assert_trend(&per_node[0], &at_cont[0], None, Trend::Down, "n0 after Redis resumed");
    assert_trend(&joined, &[0; 5], Some(&joined_at_cont), Trend::Up, "n0's newcomers while Redis paused");
    assert_trend(&joined, &joined_at_cont, None, Trend::Down, "n0's newcomers after Redis resumed");
    assert_trend(&per_node[1], &stayed_on_n1, Some(&at_cont[1]), Trend::Down, "n1 while Redis paused");
    assert_trend(&per_node[1], &at_cont[1], None, Trend::Up, "n1 after Redis resumed");
}

/// How long Redis stands still, against the nodes' `node_ttl_ms`.
#[derive(Debug, Clone, Copy)]
enum Pause {
    /// About 2 s against a 5 s TTL: no deadline passes.
    ShorterThanTtl,
    /// Twice the 1.5 s TTL: every deadline passes on Redis's clock while nobody can heartbeat.
    LongerThanTtl,
}

/// Sum of every node's `dead_nodes_reaped` counter.
async fn reaped_by_all(lab: &Lab) -> u64 {
    let mut sum = 0;
    for url in lab.urls() {
        sum += metric(&url, "rollcall_dead_nodes_reaped").await.expect("the reap counter");
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_shorter_than_the_ttl_nodes_serve_local_changes_and_reconcile_exactly() {
    redis_paused_then_resumed("chaos-redis-paused-short", Pause::ShorterThanTtl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_longer_than_the_ttl_reconciles_exactly_without_dropping_anyone() {
    redis_paused_then_resumed("chaos-redis-paused-long", Pause::LongerThanTtl).await;
}
