//! Webhooks end to end: a real receiver in the test process, real redis-server, three nodes. Every
//! event type, the vacated delay, events of a killed node's members, a killed delivering node, a
//! receiver down for a while, signatures, dead letters, a slow receiver, standalone mode.

mod lease;
pub mod receiver;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rollcall_node::count::RoomName;
use rollcall_node::presence::group_of;
use rust_socketio::TransportType;
use serde_json::{Value, json};

use self::receiver::{Mode, Receiver, SECRET};
use crate::helpers::{
    CONVERGE, ProcessNode, RedisServer, TestClient, eventually, node_env, spawn_node, try_connect_with,
    unique_prefix,
};
use crate::users::token;

/// Settings of a node that sends webhooks to `receiver` (signed users optional).
fn hooked(receiver: &Receiver, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> = [
        ("ROLLCALL_WEBHOOK_URL", receiver.url().as_str()),
        ("ROLLCALL_WEBHOOK_SECRET", SECRET),
        ("ROLLCALL_WEBHOOK_VACATED_DELAY_MS", "1000"),
        ("ROLLCALL_WEBHOOK_TIMEOUT_MS", "2000"),
        ("ROLLCALL_AUTH", "optional"),
        ("ROLLCALL_JWT_SECRET", crate::users::SECRET),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    settings.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    settings
}

fn pairs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn join(base: &str, user: Option<&str>, rooms: &[&str]) -> TestClient {
    let mut auth = json!({ "rooms": rooms });
    if let Some(user) = user {
        auth["token"] = json!(token(user, 600, json!({ "info": { "name": user } })));
    }
    try_connect_with(base, TransportType::Websocket, Some(auth)).await.expect("client connects")
}

/// Every event's id is unique, and per room the versions only grow.
fn assert_ordered_and_unique(events: &[Value]) {
    let mut ids = std::collections::HashSet::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    for event in events {
        assert!(ids.insert(event["id"].as_str().expect("id").to_owned()), "duplicate {event}");
        let room = event["room"].as_str().expect("room").to_owned();
        let version = event["version"].as_u64().expect("version");
        let previous = last.insert(room.clone(), version).unwrap_or(0);
        assert!(version >= previous, "{room}: version {version} after {previous}");
        assert!(event["at"].as_u64().is_some_and(|at| at > 1_600_000_000_000), "{event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_once_and_a_reload_fires_nothing() {
    let redis = RedisServer::start().await;
    let receiver = Receiver::start().await;
    let prefix = unique_prefix("hooks");
    let settings = hooked(&receiver, &[]);
    let a = spawn_node(Some(&redis.url()), &prefix, "a", &pairs(&settings)).await;
    let b = spawn_node(Some(&redis.url()), &prefix, "b", &pairs(&settings)).await;
    let alice = join(&a.url(), Some("alice"), &["doc"]).await;
    let bob_tab = join(&b.url(), Some("bob"), &["doc"]).await;
    eventually("occupied and two joined", CONVERGE, || async {
        receiver.count("room.occupied", "doc", None) == 1 && receiver.count("member.joined", "doc", None) == 2
    })
    .await;
    let joined: Vec<Value> = receiver.events().into_iter().filter(|e| e["type"] == "member.joined").collect();
    assert!(joined.iter().any(|e| e["user"] == "alice" && e["info"]["name"] == "alice"), "{joined:?}");
    bob_tab.disconnect().await;
    alice.disconnect().await;
    eventually("two left, then vacated after the delay", CONVERGE, || async {
        receiver.count("member.left", "doc", None) == 2 && receiver.count("room.vacated", "doc", None) == 1
    })
    .await;
    // A reload: the last one leaves and comes back within the delay.
    let anon = join(&a.url(), None, &["page"]).await;
    eventually("page occupied", CONVERGE, || async { receiver.count("room.occupied", "page", None) == 1 })
        .await;
    anon.disconnect().await;
    let _again = join(&b.url(), None, &["page"]).await;
    let quiet = Instant::now();
    eventually("past the vacated delay", CONVERGE, || async {
        quiet.elapsed() > Duration::from_millis(2500)
    })
    .await;
    assert_eq!(receiver.count("room.vacated", "page", None), 0, "a reload does not fire vacated");
    assert_eq!(receiver.count("room.occupied", "page", None), 1, "nor occupied again");
    assert_eq!(receiver.count("member.joined", "page", None), 0, "anonymous: no member events");
    assert_ordered_and_unique(&receiver.events());
    assert_eq!(receiver.bad_signatures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_members_leave_and_its_undelivered_events_are_sent_by_another() {
    let redis = RedisServer::start().await;
    let mut receiver = Receiver::start().await;
    let prefix = unique_prefix("hookkill");
    let settings =
        hooked(&receiver, &[("ROLLCALL_NODE_TTL_MS", "1500"), ("ROLLCALL_HEARTBEAT_INTERVAL_MS", "300")]);
    let mut env = node_env(Some(&redis.url()), &prefix, "a");
    env.extend(settings.iter().cloned());
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        env.insert("ROLLCALL_NODE_ID".into(), id.into());
        nodes.push(ProcessNode::start(env.clone()).await);
    }
    let room = "board";
    let lease = format!("{{{prefix}:g{}}}:lease", group_of(&RoomName::new(room).expect("room"), 16));
    let holder: String =
        loop_until_some(|| async { redis.cmd::<Option<String>>(&["GET", &lease]).await }).await;
    let index = ["a", "b", "c"].iter().position(|id| **id == holder).expect("a node holds the lease");
    let other = (index + 1) % 3;
    // Members on the holder and on another node; then the receiver goes away.
    let _stays = join(&nodes[other].url(), Some("stays"), &[room]).await;
    eventually("first events delivered", CONVERGE, || async {
        receiver.count("member.joined", room, Some("stays")) == 1
    })
    .await;
    receiver.stop();
    let doomed = join(&nodes[index].url(), Some("doomed"), &[room]).await;
    let _doomed_too = join(&nodes[index].url(), Some("doomed-too"), &[room]).await;
    eventually("the holder tried and failed", CONVERGE, || async {
        crate::helpers::presence(&nodes[other].url()).await["connections"] == 3
    })
    .await;
    nodes[index].signal("KILL").await;
    let killed = Instant::now();
    receiver.restart().await;
    eventually("the killed node's members left, delivered by another node", CONVERGE, || async {
        receiver.count("member.joined", room, Some("doomed")) == 1
            && receiver.count("member.left", room, Some("doomed")) == 1
            && receiver.count("member.left", room, Some("doomed-too")) == 1
    })
    .await;
    eprintln!("MEASURED a killed node's members left by webhook: {} ms", killed.elapsed().as_millis());
    assert_eq!(receiver.count("member.left", room, Some("stays")), 0);
    assert_ordered_and_unique(&dedup(receiver.events()));
    drop(doomed);
}

/// Events by id, first arrival kept: what a receiver that drops duplicates sees.
fn dedup(events: Vec<Value>) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    events.into_iter().filter(|e| seen.insert(e["id"].as_str().unwrap_or_default().to_owned())).collect()
}

async fn loop_until_some<T, F, Fut>(mut read: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = read().await {
            return value;
        }
        assert!(started.elapsed() < CONVERGE, "timed out waiting for a value");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_ten_seconds_gets_everything_after_in_order() {
    let redis = RedisServer::start().await;
    let mut receiver = Receiver::start().await;
    let prefix = unique_prefix("hookdown");
    let settings = hooked(&receiver, &[]);
    let a = spawn_node(Some(&redis.url()), &prefix, "a", &pairs(&settings)).await;
    receiver.stop();
    let down = Instant::now();
    let mut clients = Vec::new();
    for i in 0..12 {
        let user = format!("u{i}");
        clients.push(join(&a.url(), Some(&user), &[&format!("room-{}", i % 3)]).await);
    }
    // Written before anyone leaves: a visit shorter than one flush is never seen (no count, no event).
    eventually("all 12 counted", CONVERGE, || async { a.presence().await["connections"] == 12 }).await;
    for client in clients.drain(..6) {
        client.disconnect().await;
    }
    eventually("ten seconds of outage", Duration::from_secs(20), || async {
        down.elapsed() > Duration::from_secs(10)
    })
    .await;
    receiver.restart().await;
    let back = Instant::now();
    // The batch in flight may have just failed with a 16 s delay (± 20 %) before its next attempt.
    eventually("everything delivered", Duration::from_secs(40), || async {
        let events = dedup(receiver.events());
        events.iter().filter(|e| e["type"] == "member.joined").count() == 12
            && events.iter().filter(|e| e["type"] == "member.left").count() == 6
            && events.iter().filter(|e| e["type"] == "room.occupied").count() == 3
    })
    .await;
    eprintln!("MEASURED delivered after a 10 s receiver outage: {} ms", back.elapsed().as_millis());
    assert_ordered_and_unique(&dedup(receiver.events()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_forever_gets_dead_letters_and_a_slow_one_does_not_slow_the_count() {
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Fail);
    let settings = hooked(&receiver, &[("ROLLCALL_WEBHOOK_MAX_ATTEMPTS", "3")]);
    let node = spawn_node(None, &unique_prefix("hookdead"), "n", &pairs(&settings)).await;
    let first = join(&node.url(), None, &["lost"]).await;
    let dead = eventually_dead(&node.url()).await;
    assert!(
        dead.iter().any(|d| d["event"]["type"] == "room.occupied" && d["event"]["room"] == "lost"),
        "{dead:?}"
    );
    assert!(
        dead.iter().all(|d| d["attempts"] == 3 && d["error"].as_str().is_some_and(|e| e.contains("500")))
    );
    assert!(receiver.posts() >= 3);
    // A receiver taking 3 s per POST: the counts do not wait for it.
    receiver.set_mode(Mode::Slow(Duration::from_secs(3)));
    let started = Instant::now();
    let url = node.url();
    let more: Vec<TestClient> =
        futures_util::future::join_all((0..5).map(|_| join(&url, None, &["lost"]))).await;
    eventually("the room count is exact at once", CONVERGE, || async {
        first.room_last("lost") == Some((6, 6))
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "counts waited for the receiver: {:?}",
        started.elapsed()
    );
    drop(more);
}

async fn eventually_dead(base: &str) -> Vec<Value> {
    let url = format!("{base}/api/webhooks/dead");
    loop_until_some(|| async {
        let page: Value = reqwest::get(&url).await.expect("GET").json().await.expect("json");
        page["events"].as_array().filter(|dead| !dead.is_empty()).cloned()
    })
    .await
}
