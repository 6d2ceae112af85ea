//! The delivery lease under a steady stream: the holder keeps it while it works, so no other live
//! node sends the same group at the same time.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rollcall_node::count::RoomName;
use rollcall_node::presence::group_of;

use super::receiver::{Mode, Receiver};
use super::{assert_ordered_and_unique, hooked, join, pairs};
use crate::helpers::{CONVERGE, RedisServer, eventually, spawn_node, unique_prefix};

/// A receiver taking 600 ms per POST while a member arrives every 200 ms for 9 s: the holder's
/// backlog never empties for longer than the 5 s lease. It must still be the only sender: the
/// lease never changes hands among live nodes, and no event arrives twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_with_a_steady_backlog_keeps_its_lease_and_no_event_is_sent_twice() {
    let redis = RedisServer::start().await;
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Slow(Duration::from_millis(600)));
    let prefix = unique_prefix("hooklease");
    let settings = hooked(&receiver, &[]);
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(spawn_node(Some(&redis.url()), &prefix, id, &pairs(&settings)).await);
    }
    let room = "stream";
    let lease = format!("{{{prefix}:g{}}}:lease", group_of(&RoomName::new(room).expect("room"), 16));
    let mut holders: Vec<String> = Vec::new();
    let mut clients = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(9) {
        let node = &nodes[i % nodes.len()];
        clients.push(join(&node.url(), Some(&format!("u{i}")), &[room]).await);
        i += 1;
        if let Some(holder) = redis.cmd::<Option<String>>(&["GET", &lease]).await
            && holders.last() != Some(&holder)
        {
            holders.push(holder);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let joined = clients.len();
    eventually("every member.joined delivered", CONVERGE + CONVERGE, || async {
        receiver.count("member.joined", room, None) >= joined
    })
    .await;
    let events = receiver.events();
    let distinct: HashSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(
        holders.len(),
        1,
        "the lease changed hands among live nodes: {holders:?}; {} of {} events arrived twice",
        events.len() - distinct.len(),
        events.len()
    );
    assert_ordered_and_unique(&events);
    drop(clients);
}
