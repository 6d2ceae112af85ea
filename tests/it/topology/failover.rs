//! A Sentinel failover under load: the primary is SIGKILLed while 300 clients are connected to
//! three nodes, and the replica it is promoted from has missed the last writes. The nodes follow
//! the new primary (scripts and pub/sub), heal its data with their absolute shares and versions
//! above any they saw, and never write to the old primary when it comes back as a replica.

use std::time::{Duration, Instant};

use rust_socketio::TransportType;

use super::acl;
use super::sentinel::{Instance, MASTER, SentinelSet};
use crate::helpers::{CONVERGE, TestClient, connect_many, eventually, presence, spawn_node, unique_prefix};

async fn get(redis: &Instance, key: &str) -> Option<i64> {
    redis.try_cmd(&["GET", key]).await.ok().flatten()
}

/// The cluster's sockets as `redis` holds them.
async fn total(redis: &Instance, prefix: &str) -> Option<i64> {
    redis.try_cmd(&["HGET", &crate::helpers::global_key(prefix), "c"]).await.ok().flatten()
}

/// Connections subscribed to `channel` on `redis`.
async fn subscribers(redis: &Instance, channel: &str) -> i64 {
    let reply: redis::RedisResult<(String, i64)> = redis.try_cmd(&["PUBSUB", "NUMSUB", channel]).await;
    reply.map_or(0, |(_, n)| n)
}

/// Every client shows `users`; every node says so too, not degraded; `redis` holds it.
async fn exact(clients: &[TestClient], nodes: &[String], redis: &Instance, prefix: &str, users: i64) -> bool {
    if !clients.iter().all(|c| c.last() == Some(users)) || total(redis, prefix).await != Some(users) {
        return false;
    }
    for node in nodes {
        let doc = presence(node).await;
        if doc["users"] != users || doc["degraded"] != false {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_300_clients_heals_on_the_new_primary() {
    let mut set = SentinelSet::start("failover").await;
    let prefix = unique_prefix("failover");
    let version = format!("{{{prefix}}}:v");
    let channel = format!("{{{prefix}}}:updates");
    let sentinels = set.sentinels_setting();
    // The nodes log in as README's ACL user (ACL rules are not replicated: set on both).
    let mut rule = acl::rule(&prefix);
    rule.extend(acl::SENTINEL_COMMANDS.iter().map(|command| format!("+{command}")));
    for server in [&set.primary, &set.replica] {
        server.cmd::<()>(&acl::set_user_command("rollcall", &rule)).await;
    }
    let settings = [
        ("ROLLCALL_REDIS_SENTINELS", sentinels.as_str()),
        ("ROLLCALL_REDIS_SENTINEL_MASTER", MASTER),
        ("ROLLCALL_REDIS_USERNAME", "rollcall"),
        ("ROLLCALL_REDIS_PASSWORD", acl::PASSWORD),
    ];
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(spawn_node(None, &prefix, id, &settings).await);
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let mut clients = connect_many(&urls, 300, TransportType::Websocket).await;
    eventually("300 everywhere, on the primary", CONVERGE, || {
        exact(&clients, &urls, &set.primary, &prefix, 300)
    })
    .await;
    assert_eq!(subscribers(&set.primary, &channel).await, 3, "each node subscribes on the primary");
    // Replication is asynchronous: under load the replica may still be loading the primary's data.
    eventually("the replica holds 300 too", CONVERGE, || async {
        total(&set.replica, &prefix).await == Some(300)
    })
    .await;

    // The replica misses what follows: its replication user is switched off and its link cut.
    let off = ["ACL", "SETUSER", "replication", "off"];
    set.primary.cmd::<()>(&off).await;
    set.primary.cmd::<()>(&["CLIENT", "KILL", "TYPE", "replica"]).await;
    let leaving: Vec<TestClient> = clients.drain(..30).collect();
    for client in leaving {
        client.disconnect().await;
    }
    eventually("the primary holds 270", CONVERGE, || async {
        total(&set.primary, &prefix).await == Some(270)
    })
    .await;
    let seen_version = get(&set.primary, &version).await.expect("a version");
    assert_eq!(total(&set.replica, &prefix).await, Some(300), "the replica missed the last writes");

    set.primary.kill().await;
    let killed = Instant::now();
    let heal = Duration::from_secs(25);
    eventually("exact on the promoted replica", heal, || exact(&clients, &urls, &set.replica, &prefix, 270))
        .await;
    eprintln!(
        "MEASURED heal after SIGKILL of the Sentinel primary (300 clients, 3 nodes): {} ms",
        killed.elapsed().as_millis()
    );
    assert_eq!(set.replica.role().await.as_deref(), Some("master"));
    assert!(get(&set.replica, &version).await.expect("a version") > seen_version, "versions resume above");
    eventually("every node subscribes on the new primary", CONVERGE, || async {
        subscribers(&set.replica, &channel).await == 3
    })
    .await;

    // The old primary comes back empty; Sentinel turns it into a replica of the new one.
    set.primary.restart().await;
    eventually("the old primary is a replica again", heal, || async {
        set.primary.role().await.as_deref() == Some("slave")
    })
    .await;
    let stats: String = set.primary.cmd(&["INFO", "commandstats"]).await;
    assert!(!stats.contains("cmdstat_evalsha"), "no node ran a script on the old primary: {stats}");
    clients.extend(connect_many(&urls, 10, TransportType::Websocket).await);
    eventually("280 everywhere", CONVERGE, || exact(&clients, &urls, &set.replica, &prefix, 280)).await;
    let objects = acl::refused(set.replica.cmd(&["ACL", "LOG"]).await);
    assert!(objects.is_empty(), "the rule refused {objects:?}");
}
