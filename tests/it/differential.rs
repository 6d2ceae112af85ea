//! Differential test: the Lua scripts against the in-memory backend (the reference). The same
//! random sequence of flushes — three nodes, rooms in several groups, anonymous sockets and
//! signed users with several sockets and changing info, restarts under the same node id, reaps,
//! deregistrations, data loss (FLUSHALL) — goes to a `RedisBackend` on a real redis-server and
//! to a `MemoryBackend`, and both must agree with each other and with the truth.
//!
//! What must be equal: every reply's `restored` and incarnation; while no restart, reap or data
//! loss is being repaired, every reply's global counts, live nodes and room updates (counts,
//! members joined and left, truncation); after the cluster settles (every node flushes until
//! nothing is restored or pending), every room's counts, the room listings page by page, every
//! room's members page by page, and the global counts — which must also be the truth computed
//! from the sockets.
//!
//! What may differ, and why: version numbers (the memory backend never reaps by deadline, so a
//! reap is modelled there by `deregister`, which announces on its own); the `reaped` and
//! `pending_reaps` of replies (none in memory); and, while a restart, reap or data loss is being
//! repaired, the room counts (Redis removes a dead incarnation's room data by pending reaps or on
//! the new incarnation's first write to a group, memory at once).
//!
//! It found two bugs, pinned by the regression tests at the end (a restarted node's old user
//! cells kept by the memory backend; versions beyond what Lua counts exactly).
//!
//! The same property runs on a Redis Cluster (three primaries, three replicas): there each flush
//! is one step per slot, sent at once, and a deregistration one step per group then the global
//! one; the replies, joined, must agree with the reference all the same.
//!
//! `PROPTEST_CASES=500 cargo test --test it differential` for a long run.

mod driver;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner, contextualize_config};
use redis::IntoConnectionInfo;
use rollcall_node::config::{ClusterTarget, Credentials, RedisTarget, Topology};
use rollcall_node::count::Scope;
use rollcall_node::metrics::Metrics;
use rollcall_node::presence::{
    Counts, FlushReply, MemoryBackend, PresenceBackend, RedisBackend, RedisOptions, RoomPolicy,
};

use self::driver::{GROUPS, MAX_MEMBERS_LISTED, Replies, SimNode, room_name};
use crate::helpers::RedisServer;
use crate::topology::cluster_set::RedisCluster;

/// Cases per run unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 24;
const NODES: u8 = 3;
const ROOMS: u8 = 6;
const PREFIX: &str = "diff";
const POLICY: RoomPolicy =
    RoomPolicy { groups: GROUPS, max_members_listed: MAX_MEMBERS_LISTED, events: None };

#[derive(Debug, Clone)]
enum Op {
    /// A socket connects: anonymous, or user `.0` with info version `.1` (0: none).
    Connect {
        node: u8,
        user: Option<(u8, u8)>,
    },
    Disconnect {
        node: u8,
        pick: usize,
    },
    Join {
        node: u8,
        pick: usize,
        room: u8,
    },
    Leave {
        node: u8,
        pick: usize,
        room: u8,
    },
    Flush {
        node: u8,
    },
    /// The node's process restarts under the same id (a crash: nothing given back).
    Restart {
        node: u8,
    },
    /// `victim`'s deadline passes and `reaper`'s next flush reaps it; the victim lives on.
    Reap {
        victim: u8,
        reaper: u8,
    },
    /// The node gives its shares back (shutdown) and starts again.
    Deregister {
        node: u8,
    },
    /// Redis loses everything (FLUSHALL); the memory backend is replaced by an empty one.
    DataLoss,
    /// Every node flushes until nothing is restored or pending; then everything is compared.
    Settle,
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..NODES;
    let user = proptest::option::weighted(0.6, (0u8..4, 0u8..3));
    prop_oneof![
        6 => (node.clone(), user).prop_map(|(node, user)| Op::Connect { node, user }),
        3 => (node.clone(), any::<usize>()).prop_map(|(node, pick)| Op::Disconnect { node, pick }),
        6 => (node.clone(), any::<usize>(), 0..ROOMS).prop_map(|(node, pick, room)| Op::Join { node, pick, room }),
        3 => (node.clone(), any::<usize>(), 0..ROOMS).prop_map(|(node, pick, room)| Op::Leave { node, pick, room }),
        8 => node.clone().prop_map(|node| Op::Flush { node }),
        1 => node.clone().prop_map(|node| Op::Restart { node }),
        1 => (node.clone(), node.clone()).prop_map(|(victim, reaper)| Op::Reap { victim, reaper }),
        1 => node.prop_map(|node| Op::Deregister { node }),
        1 => Just(Op::DataLoss),
        2 => Just(Op::Settle),
    ]
}

/// Where the scripts run: one server, or a cluster.
#[derive(Clone, Copy)]
enum Store<'a> {
    Server(&'a RedisServer),
    Cluster(&'a RedisCluster),
}

impl Store<'_> {
    /// Redis loses everything: FLUSHALL on the server, or on every primary.
    async fn flush_all(&self) {
        match self {
            Store::Server(server) => server.cmd::<()>(&["FLUSHALL"]).await,
            Store::Cluster(cluster) => {
                for primary in cluster.primaries().await {
                    cluster.servers[primary].cmd::<()>(&["FLUSHALL"]).await;
                }
            }
        }
    }

    /// One command on the server that holds `key`.
    async fn cmd_on<T: redis::FromRedisValue>(&self, key: &str, args: &[&str]) -> T {
        match self {
            Store::Server(server) => server.cmd(args).await,
            Store::Cluster(cluster) => cluster.servers[cluster.primary_of(key).await].cmd(args).await,
        }
    }

    fn backend(&self) -> RedisBackend {
        let topology = match self {
            Store::Server(server) => {
                Topology::Server(server.url().into_connection_info().expect("redis url"))
            }
            Store::Cluster(cluster) => {
                let nodes = cluster.servers[..3].iter().map(|s| ("127.0.0.1".to_owned(), s.port)).collect();
                Topology::Cluster(ClusterTarget { nodes, auth: Credentials::default() })
            }
        };
        redis_backend(RedisTarget { topology, tls: None })
    }
}

/// The two backends, the nodes, and whether the last settle left nothing being repaired.
struct World<'a> {
    store: Store<'a>,
    redis: RedisBackend,
    memory: MemoryBackend,
    nodes: Vec<SimNode>,
    next_socket: u64,
    clean: bool,
}

fn redis_backend(target: RedisTarget) -> RedisBackend {
    let options = RedisOptions {
        target,
        prefix: PREFIX.to_owned(),
        timeout: Duration::from_secs(5),
        // Nobody is reaped by the clock: reaps are made on purpose (`Op::Reap`).
        node_ttl: Duration::from_secs(600),
        rooms: POLICY,
    };
    RedisBackend::new(options, Arc::new(Metrics::new())).expect("redis backend")
}

impl<'a> World<'a> {
    async fn new(store: Store<'a>) -> Self {
        store.flush_all().await;
        Self {
            store,
            redis: store.backend(),
            memory: MemoryBackend::new(POLICY),
            nodes: (0..NODES).map(|n| SimNode::new(format!("n{n}"))).collect(),
            next_socket: 0,
            clean: true,
        }
    }

    async fn flush(&mut self, node: u8) -> Replies {
        let node = &mut self.nodes[usize::from(node)];
        let replies = node.flush(&self.redis, &self.memory).await;
        assert_eq!(replies.redis.incarnation, replies.memory.incarnation, "{}: incarnation", node.name);
        if self.clean {
            same_replies(&replies);
        }
        replies
    }

    async fn run(&mut self, op: &Op) {
        match *op {
            Op::Connect { node, user } => {
                self.next_socket += 1;
                self.nodes[usize::from(node)].connect(self.next_socket, user);
            }
            Op::Disconnect { node, pick } => self.nodes[usize::from(node)].disconnect(pick),
            Op::Join { node, pick, room } => self.nodes[usize::from(node)].join(pick, room),
            Op::Leave { node, pick, room } => self.nodes[usize::from(node)].leave(pick, room),
            Op::Flush { node } => {
                self.flush(node).await;
            }
            Op::Restart { node } => {
                self.nodes[usize::from(node)].restart();
                self.clean = false;
            }
            Op::Reap { victim, reaper } => self.reap(victim, reaper).await,
            Op::Deregister { node } => {
                let sim = &mut self.nodes[usize::from(node)];
                let groups: Vec<u16> = (0..GROUPS).collect();
                self.redis.deregister(&sim.name, sim.redis.incarnation, &groups).await.expect("redis");
                self.memory.deregister(&sim.name, sim.memory.incarnation, &groups).await.expect("memory");
                sim.restart();
            }
            Op::DataLoss => {
                self.store.flush_all().await;
                self.memory = MemoryBackend::new(POLICY);
                self.clean = false;
            }
            Op::Settle => self.settle().await,
        }
    }

    async fn reap(&mut self, victim: u8, reaper: u8) {
        let reaper = if reaper == victim { (victim + 1) % NODES } else { reaper };
        let sim = &self.nodes[usize::from(victim)];
        if sim.redis.incarnation == 0 {
            return;
        }
        let nodes_key = format!("{{{PREFIX}}}:nodes");
        let _: i64 = self.store.cmd_on(&nodes_key, &["ZADD", &nodes_key, "1", &sim.name]).await;
        let groups: Vec<u16> = (0..GROUPS).collect();
        self.memory.deregister(&sim.name, sim.memory.incarnation, &groups).await.expect("memory");
        self.clean = false;
        let replies = self.flush(reaper).await;
        assert_eq!(replies.redis.reaped, [sim_name(victim)], "the reaper's flush reaps the victim");
    }
}

fn sim_name(node: u8) -> String {
    format!("n{node}")
}

/// What must be equal in both backends' replies to one flush while nothing is being repaired.
fn same_replies(replies: &Replies) {
    let (r, m) = (&replies.redis, &replies.memory);
    assert_eq!(r.global.counts, m.global.counts, "global counts in the replies");
    assert_eq!(nodes(r), nodes(m), "live nodes in the replies");
    assert_eq!(room_updates(r), room_updates(m), "room updates in the replies");
}

fn nodes(reply: &FlushReply) -> BTreeSet<(String, i64)> {
    reply.nodes.iter().map(|n| (n.id.clone(), n.users)).collect()
}

type RoomUpdateView = (String, Counts, Vec<(String, Option<String>)>, Vec<(String, Option<String>)>, bool);

fn room_updates(reply: &FlushReply) -> Vec<RoomUpdateView> {
    let members = |list: &[rollcall_node::presence::Member]| {
        let mut out: Vec<_> =
            list.iter().map(|m| (m.user.to_string(), m.info.as_deref().map(str::to_owned))).collect();
        out.sort();
        out
    };
    let mut out: Vec<RoomUpdateView> = reply
        .rooms
        .iter()
        .map(|u| (u.room.to_string(), u.snapshot.counts, members(&u.joined), members(&u.left), u.truncated))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

mod settle;

#[test]
fn the_scripts_agree_with_the_in_memory_backend() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let server = runtime.block_on(RedisServer::start());
    agree(&runtime, Store::Server(&server), CASES);
}

#[test]
fn the_scripts_on_a_redis_cluster_agree_with_the_in_memory_backend() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let cluster = runtime.block_on(RedisCluster::start("differential"));
    agree(&runtime, Store::Cluster(&cluster), CASES / 2);
}

/// Runs the property on `store`: `cases` random sequences (unless `PROPTEST_CASES` says otherwise).
fn agree(runtime: &tokio::runtime::Runtime, store: Store<'_>, cases: u32) {
    let config = contextualize_config(Config { cases, failure_persistence: None, ..Config::default() });
    let mut runner = TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
        runtime.block_on(replay(store, &ops));
        Ok::<(), TestCaseError>(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// Runs `ops` on both backends from empty, then settles and compares.
async fn replay(store: Store<'_>, ops: &[Op]) {
    let mut world = World::new(store).await;
    for op in ops {
        world.run(op).await;
    }
    world.settle().await;
}

/// Regression: a node that registered a new incarnation kept the global user cells of its old
/// one in the memory backend. Shrunk from the property above: n2
/// counts one socket of a signed user, writes it, and restarts (a crash: nothing given back);
/// its new process's first flush writes an empty global share. Redis buries the old
/// incarnation's share (0 sockets, 0 users); memory set the sockets to 0 but kept the user's
/// cell (0 sockets, 1 user) for good. (Standalone nodes never re-register, so only tests that
/// share one `MemoryBackend` between runs of a node id can see it.)
#[test]
fn a_new_incarnation_leaves_no_user_of_the_old_one_in_memory() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let server = RedisServer::start().await;
        let ops =
            [Op::Connect { node: 2, user: Some((0, 0)) }, Op::Flush { node: 2 }, Op::Restart { node: 2 }];
        replay(Store::Server(&server), &ops).await;
    });
}

/// Regression, found by the property in CI: a room share outlived its node's restart after Redis
/// had lost its data. The counter of incarnations starts again after the loss, the reseeding
/// flush's room group stored the number the node sent (2) while the global step handed out a new
/// one (1), and the restart's reap of incarnation 1 did not match the group's 2: room 5 kept one
/// connection nobody held. Now a node is never given a number it has had, and a group reap takes
/// the reaped incarnation or any older one.
#[test]
fn a_restart_after_data_loss_leaves_no_room_share_of_the_old_incarnation() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let ops = [
        Op::Flush { node: 1 },
        Op::Flush { node: 0 },
        Op::Connect { node: 0, user: None },
        Op::Join { node: 0, pick: 477_301, room: 5 },
        Op::DataLoss,
        Op::Flush { node: 0 },
        Op::Restart { node: 0 },
        Op::Settle,
    ];
    let server = runtime.block_on(RedisServer::start());
    runtime.block_on(replay(Store::Server(&server), &ops));
    let cluster = runtime.block_on(RedisCluster::start("differential-loss"));
    runtime.block_on(replay(Store::Cluster(&cluster), &ops));
}

/// The truth of `scope`, computed from the nodes' sockets.
fn truth(nodes: &[SimNode], scope: &Scope) -> Counts {
    let mut connections = 0;
    let mut anonymous = 0;
    let mut users = BTreeSet::new();
    for user in nodes.iter().flat_map(|n| n.members_of(scope)) {
        connections += 1;
        match user {
            None => anonymous += 1,
            Some(u) => {
                users.insert(u);
            }
        }
    }
    Counts { connections, users: anonymous + users.len() as i64 }
}

fn rooms() -> Vec<rollcall_node::count::RoomName> {
    (0..ROOMS).map(room_name).collect()
}

/// Versions are exact in Lua (doubles) only below 2^53, so nodes refuse announcements beyond
/// `MAX_VERSION` (2^52; found by this suite: a forged version of 2^53 became a floor the script
/// could not step past, and one near 2^64 made it return a negative version). Up to that bound
/// every write still moves the version up.
#[test]
fn writes_at_the_highest_floor_a_node_accepts_still_move_the_version_up() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let server = RedisServer::start().await;
        let redis = Store::Server(&server).backend();
        let mut floor = rollcall_node::presence::MAX_VERSION;
        for _ in 0..3 {
            let flush = rollcall_node::presence::Flush {
                node: "n0".into(),
                global_floor: floor,
                ..Default::default()
            };
            let reply = redis.flush(&flush).await.expect("flush");
            assert!(reply.global.version > floor, "version {} after floor {floor}", reply.global.version);
            floor = reply.global.version;
        }
    });
}
