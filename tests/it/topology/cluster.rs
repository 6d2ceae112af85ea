//! Redis Cluster: three primaries and three replicas; rooms on every shard. Counts are exact
//! with real clients; a SIGKILLed node is reaped in every slot it held; a SIGKILLed primary is
//! replaced by its replica and every room is exact again; a cluster setting that points at
//! something else is one line.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rollcall_node::count::RoomName;
use rollcall_node::presence::group_of;
use rust_socketio::TransportType;
use serde_json::{Value, json};

use super::acl;
use super::cluster_set::RedisCluster;
use super::logged::LoggedNode;
use crate::helpers::{
    CONVERGE, ProcessNode, RedisServer, TestClient, eventually, free_port, node_env, presence, spawn_node,
    try_connect_with, unique_prefix,
};

const GROUPS: u16 = 16;

/// `{prefix:gN}`-tagged key of a room's aggregate.
fn room_key(prefix: &str, room: &str) -> String {
    let group = group_of(&RoomName::new(room).expect("room"), GROUPS);
    format!("{{{prefix}:g{group}}}:r:{room}")
}

/// `per_shard` room names for each of the three primaries: `(room, primary index)`.
async fn rooms_on_every_shard(
    cluster: &RedisCluster,
    prefix: &str,
    per_shard: usize,
) -> Vec<(String, usize)> {
    let mut owner_of_group = BTreeMap::new();
    for g in 0..GROUPS {
        owner_of_group.insert(g, cluster.primary_of(&format!("{{{prefix}:g{g}}}:v")).await);
    }
    let mut chosen: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for i in 0..1000 {
        let room = format!("room-{i}");
        let owner = owner_of_group[&group_of(&RoomName::new(&room).expect("room"), GROUPS)];
        let list = chosen.entry(owner).or_default();
        if list.len() < per_shard {
            list.push(room);
        }
        if chosen.len() == 3 && chosen.values().all(|l| l.len() == per_shard) {
            break;
        }
    }
    assert_eq!(chosen.len(), 3, "16 groups land on all three primaries: {owner_of_group:?}");
    chosen.into_iter().flat_map(|(owner, rooms)| rooms.into_iter().map(move |r| (r, owner))).collect()
}

/// A client in one room.
struct Member {
    room: String,
    client: TestClient,
}

async fn join(base: &str, room: &str) -> Member {
    let auth = json!({ "rooms": [room] });
    let client = try_connect_with(base, TransportType::Websocket, Some(auth)).await.expect("connects");
    Member { room: room.to_owned(), client }
}

/// Every member shows the cluster total and its room's count; every node's API agrees and is
/// not degraded.
async fn exact(members: &[Member], nodes: &[String], rooms: &[String]) -> bool {
    let total = i64::try_from(members.len()).expect("small");
    let mut per_room: HashMap<&str, i64> = rooms.iter().map(|r| (r.as_str(), 0)).collect();
    for member in members {
        *per_room.entry(&member.room).or_default() += 1;
    }
    let shown = |m: &Member| {
        let n = per_room[m.room.as_str()];
        m.client.last() == Some(total) && m.client.room_last(&m.room) == Some((n, n))
    };
    if !members.iter().all(shown) {
        return false;
    }
    let http = reqwest::Client::new();
    for node in nodes {
        let doc = presence(node).await;
        if doc["users"] != total || doc["degraded"] != false {
            return false;
        }
        let reply =
            http.post(format!("{node}/api/rooms/counts")).json(&json!({ "rooms": rooms })).send().await;
        let Ok(body) = reply.and_then(|r| r.error_for_status()) else { return false };
        let counts: Value = body.json().await.expect("json");
        let got: Vec<Option<i64>> =
            counts["rooms"].as_array().expect("rooms").iter().map(|c| c["connections"].as_i64()).collect();
        let want: Vec<Option<i64>> = rooms.iter().map(|r| Some(per_room[r.as_str()])).collect();
        if got != want {
            return false;
        }
    }
    true
}

/// Subscribers of a sharded channel on the server that serves it.
async fn shard_subscribers(cluster: &RedisCluster, channel: &str) -> i64 {
    let owner = cluster.primary_of(channel).await;
    let reply: redis::RedisResult<(String, i64)> =
        cluster.servers[owner].try_cmd(&["PUBSUB", "SHARDNUMSUB", channel]).await;
    reply.map_or(0, |(_, n)| n)
}

fn cluster_env(cluster: &RedisCluster, prefix: &str, id: &str) -> HashMap<String, String> {
    let mut env = node_env(None, prefix, id);
    env.insert("ROLLCALL_REDIS_CLUSTER_NODES".into(), cluster.seeds());
    env.insert("ROLLCALL_HEARTBEAT_INTERVAL_MS".into(), "300".into());
    env.insert("ROLLCALL_NODE_TTL_MS".into(), "1500".into());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_every_shard_are_exact_and_a_crashed_node_is_reaped_in_every_slot() {
    let cluster = RedisCluster::start("spread").await;
    let prefix = unique_prefix("cluster-spread");
    let placed = rooms_on_every_shard(&cluster, &prefix, 2).await;
    let rooms: Vec<String> = placed.iter().map(|(room, _)| room.clone()).collect();
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(ProcessNode::start(cluster_env(&cluster, &prefix, id)).await);
    }
    let urls: Vec<String> = nodes.iter().map(ProcessNode::url).collect();
    let mut members = Vec::new();
    for room in &rooms {
        for url in &urls {
            members.push(join(url, room).await);
        }
    }
    eventually("18 clients in 6 rooms on 3 shards, exact", CONVERGE, || exact(&members, &urls, &rooms)).await;

    // Each room lives on the primary its group's tag names, and each announces on its shard.
    for (room, owner) in &placed {
        let exists: i64 = cluster.servers[*owner].cmd(&["EXISTS", &room_key(&prefix, room)]).await;
        assert_eq!(exists, 1, "{room} is on primary {owner}");
    }
    for g in 0..GROUPS {
        let channel = format!("{{{prefix}:g{g}}}:updates");
        eventually(&format!("3 nodes subscribe {channel}"), CONVERGE, || async {
            shard_subscribers(&cluster, &channel).await == 3
        })
        .await;
    }
    for primary in &cluster.servers[..3] {
        let stats: String = primary.cmd(&["INFO", "commandstats"]).await;
        assert!(stats.contains("cmdstat_evalsha"), "every shard runs steps: {stats}");
        let classic: (String, i64) =
            primary.cmd(&["PUBSUB", "NUMSUB", &format!("{{{prefix}}}:updates")]).await;
        assert_eq!(classic.1, 0, "no cluster-wide channel is used");
    }

    // A node crashes: the survivors reap its global share and its rooms, in every slot.
    nodes[2].signal("KILL").await;
    let killed = Instant::now();
    // Members were made room by room, one on each node in turn: every third is on node c.
    let (mut staying, mut gone) = (Vec::new(), Vec::new());
    for (i, member) in members.into_iter().enumerate() {
        if i % 3 == 2 { gone.push(member) } else { staying.push(member) }
    }
    let survivors = &urls[..2];
    eventually("every room exact without the crashed node", CONVERGE, || exact(&staying, survivors, &rooms))
        .await;
    eprintln!(
        "MEASURED Redis Cluster: every room on 3 shards healed after SIGKILL of a node: {} ms",
        killed.elapsed().as_millis()
    );
    for (room, owner) in &placed {
        let group = group_of(&RoomName::new(room).expect("room"), GROUPS);
        let held = format!("{{{prefix}:g{group}}}:n:c");
        let left: i64 = cluster.servers[*owner].cmd(&["EXISTS", &held]).await;
        assert_eq!(left, 0, "the crashed node's rooms in group {group} are gone");
    }
    drop(gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_failover_inside_the_cluster_heals_every_room() {
    let mut cluster = RedisCluster::start("failover").await;
    let prefix = unique_prefix("cluster-failover");
    // The nodes log in as README's ACL user; ACL rules are per server: set on all six.
    let mut rule = acl::rule(&prefix);
    rule.extend(acl::CLUSTER_COMMANDS.iter().map(|command| format!("+{command}")));
    for server in &cluster.servers {
        server.cmd::<()>(&acl::set_user_command("rollcall", &rule)).await;
    }
    let placed = rooms_on_every_shard(&cluster, &prefix, 2).await;
    let rooms: Vec<String> = placed.iter().map(|(room, _)| room.clone()).collect();
    let seeds = cluster.seeds();
    let settings = [
        ("ROLLCALL_REDIS_CLUSTER_NODES", seeds.as_str()),
        ("ROLLCALL_REDIS_USERNAME", "rollcall"),
        ("ROLLCALL_REDIS_PASSWORD", acl::PASSWORD),
    ];
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(spawn_node(None, &prefix, id, &settings).await);
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let mut members = Vec::new();
    for room in &rooms {
        for url in &urls {
            members.push(join(url, room).await);
        }
    }
    eventually("18 clients in 6 rooms on 3 shards, exact", CONVERGE, || exact(&members, &urls, &rooms)).await;

    // First a primary with rooms only, then the one that also holds the global count.
    let global = format!("{{{prefix}}}:agg");
    let global_owner = cluster.primary_of(&global).await;
    let rooms_only = (0..3).find(|&i| i != global_owner).expect("another primary");
    for victim in [rooms_only, global_owner] {
        let replica = cluster.replica_of(victim).await;
        let mut on_victim = Vec::new();
        for room in &rooms {
            if cluster.primary_of(&room_key(&prefix, room)).await == victim {
                on_victim.push(room.clone());
            }
        }
        cluster.servers[victim].kill().await;
        let killed = Instant::now();
        // A room on the lost shard changes while it fails over.
        let leaving = members.iter().position(|m| on_victim.contains(&m.room)).expect("a member there");
        members.remove(leaving).client.disconnect().await;
        let heal = Duration::from_secs(30);
        eventually("every room exact after the failover", heal, || exact(&members, &urls, &rooms)).await;
        eprintln!(
            "MEASURED Redis Cluster: every room exact after SIGKILL of a primary ({}): {} ms",
            if victim == global_owner { "global slot and rooms" } else { "rooms only" },
            killed.elapsed().as_millis()
        );
        for room in &on_victim {
            assert_eq!(
                cluster.primary_of(&room_key(&prefix, room)).await,
                replica,
                "{room} moved to the replica"
            );
        }
        for g in 0..GROUPS {
            let channel = format!("{{{prefix}:g{g}}}:updates");
            eventually(&format!("3 nodes subscribe {channel} on its primary"), CONVERGE, || async {
                shard_subscribers(&cluster, &channel).await == 3
            })
            .await;
        }
    }
    for server in cluster.servers.iter().filter(|s| s.running()) {
        let objects = acl::refused(server.cmd(&["ACL", "LOG"]).await);
        assert!(objects.is_empty(), "the rule refused {objects:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_that_are_not_a_cluster_are_one_degraded_line() {
    let standalone = RedisServer::start().await;
    let prefix = unique_prefix("not-a-cluster");
    let nobody = format!("127.0.0.1:{}", free_port());
    let one = format!("127.0.0.1:{}", standalone.port);
    let cases = [
        ("a standalone redis-server", one, "not a Redis Cluster"),
        ("nobody listens", nobody, "cannot reach"),
    ];
    for (what, seeds, reason) in cases {
        let mut env = node_env(None, &prefix, &what.replace(' ', "-"));
        env.insert("ROLLCALL_REDIS_CLUSTER_NODES".into(), seeds.clone());
        let node = LoggedNode::start(&env).await;
        let line = node.degraded_with("cannot write to the backend").await;
        eprintln!("{what}: {line}");
        assert!(line.contains(reason) && line.contains(&seeds), "{what}: {line}");
        assert_eq!(presence(&node.url()).await["users"], Value::Null, "{what}: no number shown");
        assert!(!node.log().contains("panicked"), "{what}: {}", node.log());
    }
}
