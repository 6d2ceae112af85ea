//! A network lab for the chaos tests: Redis and every node on a Linux network namespace of its
//! own, so a partition is a real link going down and a process fault is a real signal.
//!
//! One lab (`B` = its address block, `i` = node index):
//!
//! ```text
//!  test process (root namespace)            namespaces the lab creates
//!  rcfBx0   10.213.B.1/30  ── front ──  10.213.B.2   <tag>-redis   redis-server :6379
//!  rcfBx1   10.213.B.5/30  ── front ──  10.213.B.6   <tag>-n0      rollcall serve :3000
//!                                       back 172.31.0.2/30 ── n0 172.31.0.1 (in <tag>-redis)
//!  rcfBx2   10.213.B.9/30  ── front ──  10.213.B.10  <tag>-n1      ...
//! ```
//!
//! Each node has two links. The *front* link is the only way in from the test process: its
//! clients and HTTP checks use it, and nothing routes from it to Redis. The *back* link is a veth
//! pair straight to the Redis namespace and the only way to Redis. So cutting a back link cuts a
//! node off from Redis while its clients keep reaching it.
//!
//! Faults on a back link:
//! - [`Lab::cut_back`]: `ip link set back down`. The route goes away; the node's sends fail with
//!   "network unreachable" and new connections are refused at once.
//! - [`Lab::lossy_back`]: every packet on the link is silently dropped, both ways; TCP sees no
//!   reset, only silence, so only the node's own `redis_timeout_ms` notices. The usual tool,
//!   `tc qdisc ... netem loss 100%`, is not available on our machines (CI's included): their
//!   kernel is built without `sch_netem` and without `act_gact` (so no `tc ... action drop`
//!   either) and cannot load modules. nftables is built in: the lab adds a table with
//!   `iifname/oifname "back" drop` in the node's namespace. It is used on every machine, so the
//!   test means the same everywhere.
//!
//! Naming and cleanup: namespaces are `rcchaos-<pid>-<n>-<role>`, unique per test process and
//! lab. Root-side front links are `rcf<B>x<link>`; `B` is chosen under a lock file as the lowest
//! block no `rcf` link uses, so labs of parallel tests (and of other test processes) never share
//! a subnet. Dropping a [`Lab`] kills its processes by PID and deletes its namespaces (which
//! removes the veth pairs). The first lab of a process deletes the namespaces of dead test
//! processes (the pid in the name) and kills what still runs inside them.
//!
//! Needs root, iproute2 and nftables: without them a lab panics with a message saying so.
//! Processes and the public API are here; namespaces, links and addresses in `netns/network.rs`.

mod network;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use self::network::{Network, must, run};
use crate::helpers::{eventually, node_env, unique_prefix};

const NODE_PORT: u16 = 3000;
const REDIS_PORT: u16 = 6379;
const MAX_NODES: usize = 16;
const STARTUP: Duration = Duration::from_secs(15);

/// Redis, `N` rollcall nodes and the links between them, each on its own network namespace.
pub struct Lab {
    test: String,
    prefix: String,
    settings: Vec<(String, String)>,
    redis: Option<Child>,
    nodes: Vec<Option<Child>>,
    /// Dropped after the processes are killed (fields drop after `Drop::drop`).
    network: Network,
}

impl Lab {
    /// Builds the network, starts Redis and `nodes` nodes (ids `n0`, `n1`, ...) with the given
    /// `ROLLCALL_*` settings, and waits until all of them are ready.
    pub async fn start(test: &str, nodes: usize, settings: &[(&str, &str)]) -> Self {
        assert!(nodes <= MAX_NODES, "a lab has at most {MAX_NODES} nodes");
        let mut lab = Self {
            test: test.to_owned(),
            prefix: unique_prefix(test),
            settings: settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            redis: None,
            nodes: (0..nodes).map(|_| None).collect(),
            network: Network::build(nodes),
        };
        lab.redis = Some(lab.spawn(&lab.network.redis_ns(), "redis", redis_args(), HashMap::new()));
        lab.wait_redis().await;
        for node in 0..nodes {
            lab.nodes[node] = Some(lab.spawn_node(node));
        }
        futures_util::future::join_all((0..nodes).map(|node| lab.wait_ready(node))).await;
        lab
    }

    /// Runs `program` inside `ns`. `ip netns exec` execs it, so the child's PID is the program's
    /// own (checked in `wait_redis` and `wait_ready`). Its stderr lines are printed as
    /// `[<test> <label>] ...` (shown with a failed test's output).
    fn spawn(
        &self,
        ns: &str,
        label: &str,
        program_and_args: Vec<String>,
        env: HashMap<String, String>,
    ) -> Child {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(&program_and_args)
            .env_clear()
            .envs(env)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("chaos tests need iproute2: cannot run ip netns exec: {e}"));
        if let Some(stderr) = child.stderr.take() {
            let label = format!("{} {label}", self.test);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[{label}] {line}");
                }
            });
        }
        child
    }

    fn spawn_node(&self, node: usize) -> Child {
        let redis_url = format!("redis://{}:{REDIS_PORT}", Network::redis_back(node));
        let mut env = node_env(Some(&redis_url), &self.prefix, &node_id(node));
        env.insert("ROLLCALL_BIND".into(), self.network.node_front(node));
        env.insert("ROLLCALL_PORT".into(), NODE_PORT.to_string());
        env.extend(self.settings.iter().cloned());
        let program = vec![env!("CARGO_BIN_EXE_rollcall").to_owned(), "serve".to_owned()];
        self.spawn(&self.network.node_ns(node), &node_id(node), program, env)
    }

    async fn wait_redis(&self) {
        let client = redis::Client::open(self.redis_url()).expect("redis url");
        eventually("redis-server in its namespace answers PING", STARTUP, || {
            let client = client.clone();
            async move {
                match client.get_multiplexed_async_connection().await {
                    Ok(mut conn) => redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        assert_eq!(command_name(self.redis_pid()), "redis-server", "the child PID is redis-server's");
    }

    async fn wait_ready(&self, node: usize) {
        let url = format!("{}/readyz", self.url(node));
        eventually(&format!("node {} is ready", node_id(node)), STARTUP, || {
            let url = url.clone();
            async move { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        assert_eq!(command_name(self.node_pid(node)), "rollcall", "the child PID is the node's");
    }

    /// The Redis key prefix of this lab's nodes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `http://<front address>:3000` of node `node`, reachable from the test process.
    pub fn url(&self, node: usize) -> String {
        format!("http://{}:{NODE_PORT}", self.network.node_front(node))
    }

    /// Every node's URL, in index order.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|node| self.url(node)).collect()
    }

    /// Redis as the test process reaches it (its front link; the nodes use their back links).
    pub fn redis_url(&self) -> String {
        format!("redis://{}:{REDIS_PORT}", self.network.redis_front())
    }

    /// Runs one Redis command through the front link and returns its reply.
    pub async fn redis_cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let client = redis::Client::open(self.redis_url()).expect("redis url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect to lab redis");
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await.expect("redis command")
    }

    /// Takes node `node`'s back link down: Redis becomes unreachable for it, and only for it.
    pub fn cut_back(&self, node: usize) {
        self.network.set_back(node, false);
    }

    /// Brings the back link up again (the kernel restores its route).
    pub fn heal_back(&self, node: usize) {
        self.network.set_back(node, true);
    }

    /// Drops every packet on node `node`'s back link, both ways, without telling anyone
    /// (100% loss; nftables, see the module docs for why not netem).
    pub fn lossy_back(&self, node: usize) {
        self.network.drop_on_back(node, true);
    }

    /// Lets packets through node `node`'s back link again.
    pub fn heal_lossy_back(&self, node: usize) {
        self.network.drop_on_back(node, false);
    }

    /// The PID of node `node` (the `rollcall serve` process itself).
    pub fn node_pid(&self, node: usize) -> u32 {
        self.nodes[node].as_ref().and_then(Child::id).expect("node is running")
    }

    /// The PID of redis-server.
    pub fn redis_pid(&self) -> u32 {
        self.redis.as_ref().and_then(Child::id).expect("redis-server is running")
    }

    /// Sends `signal` ("STOP", "CONT", "KILL", "TERM") to node `node`'s process only.
    pub fn signal_node(&self, node: usize, signal: &str) {
        send_signal(self.node_pid(node), signal);
    }

    /// Sends `signal` to redis-server ("STOP" and "CONT": Redis paused and resumed).
    pub fn signal_redis(&self, signal: &str) {
        send_signal(self.redis_pid(), signal);
    }

    /// Waits for node `node`'s process to end (after KILL or TERM), starts it again with the
    /// same id, address and settings, and waits until it is ready.
    pub async fn restart_node(&mut self, node: usize) {
        if let Some(mut old) = self.nodes[node].take() {
            tokio::time::timeout(STARTUP, old.wait()).await.expect("the old node exits").expect("wait");
        }
        self.nodes[node] = Some(self.spawn_node(node));
        self.wait_ready(node).await;
    }
}

impl Drop for Lab {
    /// Kills every process by PID and waits (bounded) for them to end, so that deleting the
    /// namespaces afterwards (`Network`'s drop) really frees them and their veth pairs.
    fn drop(&mut self) {
        let mut children: Vec<Child> = self.nodes.iter_mut().filter_map(Option::take).collect();
        children.extend(self.redis.take());
        for child in &mut children {
            let _ = child.start_kill(); // SIGKILL, also ends a stopped process
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn node_id(node: usize) -> String {
    format!("n{node}")
}

fn redis_args() -> Vec<String> {
    let args = ["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no"];
    let no_persistence = ["--save", "", "--appendonly", "no"];
    args.iter().chain(&no_persistence).map(|s| (*s).to_owned()).collect()
}

fn send_signal(pid: u32, signal: &str) {
    must(run("kill", &[&format!("-{signal}"), &pid.to_string()]));
}

/// `/proc/<pid>/comm`: the name of the program the process runs.
fn command_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|s| s.trim().to_owned()).unwrap_or_default()
}
