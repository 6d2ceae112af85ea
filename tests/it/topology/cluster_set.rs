//! A Redis Cluster as operators run it: three primaries and three replicas of Debian's
//! redis-server on loopback ports, joined by `redis-cli --cluster create`, each a child process
//! killed on drop.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::sentinel::Instance;
use crate::helpers::{eventually, free_port};

/// How long a primary may be silent before its replica takes over.
const NODE_TIMEOUT_MS: u32 = 1500;

/// Six cluster nodes; `servers[0..3]` start as the primaries.
pub struct RedisCluster {
    /// Every node, in the order of `cluster create` (primaries first).
    pub servers: Vec<Instance>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster (one replica per primary) and waits until every
    /// node says `cluster_state:ok` and every replica is in sync.
    pub async fn start(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rollcall-cluster-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut servers = Vec::new();
        for _ in 0..6 {
            servers.push(node(&dir).await);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        create.args(servers.iter().map(|s| format!("127.0.0.1:{}", s.port)));
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let created = tokio::time::timeout(
            Duration::from_secs(60),
            create.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).output(),
        )
        .await
        .expect("redis-cli --cluster create finishes within 60 s")
        .expect("redis-cli must be installed (the test script installs it)");
        assert!(created.status.success(), "cluster create: {}", String::from_utf8_lossy(&created.stdout));
        let cluster = Self { servers, dir };
        cluster.wait_until_healthy().await;
        cluster
    }

    /// `redis_cluster_nodes` for a node: two seeds (a node must start while one is down).
    pub fn seeds(&self) -> String {
        format!("127.0.0.1:{},127.0.0.1:{}", self.servers[0].port, self.servers[1].port)
    }

    /// Until every live node says `cluster_state:ok`, sees the same primaries serving all
    /// slots, and every replica's link to its primary is up.
    pub async fn wait_until_healthy(&self) {
        eventually("the cluster is ok on every node, replicas in sync", Duration::from_secs(30), || async {
            for server in self.live() {
                let info: String = match server.try_cmd(&["CLUSTER", "INFO"]).await {
                    Ok(info) => info,
                    Err(_) => return false,
                };
                if !info.contains("cluster_state:ok") {
                    return false;
                }
                let replication: String = server.try_cmd(&["INFO", "replication"]).await.unwrap_or_default();
                if replication.contains("role:slave") && !replication.contains("master_link_status:up") {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// The nodes that run (not killed by the test).
    fn live(&self) -> impl Iterator<Item = &Instance> {
        self.servers.iter().filter(|s| s.running())
    }

    /// The index in `servers` of the primary serving `key`'s slot, as the cluster says now.
    pub async fn primary_of(&self, key: &str) -> usize {
        let asked = self.live().next().expect("a live node");
        let slot: i64 = asked.cmd(&["CLUSTER", "KEYSLOT", key]).await;
        let nodes: String = asked.cmd(&["CLUSTER", "NODES"]).await;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                low.parse::<i64>().is_ok_and(|low| low <= slot)
                    && high.parse::<i64>().is_ok_and(|high| slot <= high)
            });
            if serves {
                let port: u16 =
                    fields[1].split(['@', ':']).nth(1).and_then(|p| p.parse().ok()).expect("port");
                return self.servers.iter().position(|s| s.port == port).expect("one of ours");
            }
        }
        panic!("no primary serves slot {slot} of {key}:\n{nodes}");
    }

    /// The indexes in `servers` of the live primaries.
    pub async fn primaries(&self) -> Vec<usize> {
        let mut primaries = Vec::new();
        for (i, server) in self.servers.iter().enumerate().filter(|(_, s)| s.running()) {
            if server.role().await.as_deref() == Some("master") {
                primaries.push(i);
            }
        }
        primaries
    }

    /// The replica of `servers[primary]`, as the cluster says now.
    pub async fn replica_of(&self, primary: usize) -> usize {
        let id: String = self.servers[primary].cmd(&["CLUSTER", "MYID"]).await;
        for (i, server) in self.servers.iter().enumerate() {
            let replication: String = server.try_cmd(&["INFO", "replication"]).await.unwrap_or_default();
            let line = format!("master_port:{}", self.servers[primary].port);
            if replication.contains("role:slave") && replication.contains(&line) {
                return i;
            }
        }
        panic!("no replica of {id}");
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One cluster-enabled redis-server without persistence; its cluster bus on a port of its own
/// (the default, port + 10000, may not exist above 55535).
async fn node(dir: &std::path::Path) -> Instance {
    let dir = dir.to_owned();
    Instance::start("redis-server", move |port| {
        let config = dir.join(format!("nodes-{port}.conf"));
        let _ = std::fs::remove_file(&config);
        [
            "--port",
            &port.to_string(),
            "--cluster-port",
            &free_port().to_string(),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &config.display().to_string(),
            "--cluster-node-timeout",
            &NODE_TIMEOUT_MS.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    })
    .await
}
