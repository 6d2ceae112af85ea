//! The plumbing of a lab: namespaces, veth pairs, addresses, link faults, and the cleanup of
//! what dead test processes left behind. Shell commands only (`ip`, `nft`, `kill`), run to
//! completion; each takes milliseconds.

use std::process::Stdio;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

const NS_PREFIX: &str = "rcchaos-";
/// The nftables table that makes a back link drop everything (see the module docs of `netns`).
const DROP_BACK: &str = "table inet rollcall_chaos { \
    chain input { type filter hook input priority 0; policy accept; iifname \"back\" drop; }; \
    chain output { type filter hook output priority 0; policy accept; oifname \"back\" drop; }; }";

/// One lab's namespaces and links; deletes the namespaces (and so the veth pairs) on drop.
pub struct Network {
    tag: String,
    block: u8,
    /// Created namespaces, deleted in reverse order.
    namespaces: Vec<String>,
}

impl Network {
    /// Creates the Redis namespace and `nodes` node namespaces, each with its front link to the
    /// root namespace and its back link to Redis.
    pub fn build(nodes: usize) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        clean_stale_labs();
        let tag = format!("{NS_PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut network = Self { tag, block: 0, namespaces: Vec::new() };
        // First, so a machine without root or iproute2 fails with the message that says so.
        network.add_namespace(&network.redis_ns());
        for node in 0..nodes {
            network.add_namespace(&network.node_ns(node));
        }
        // Held until every front link of this lab exists, so no other lab can pick the block.
        let _lock = allocation_lock();
        network.block = free_block();
        network.add_front(&network.redis_ns(), 0);
        for node in 0..nodes {
            network.add_front(&network.node_ns(node), node + 1);
            network.add_back(node);
        }
        network
    }

    /// The Redis host's namespace.
    pub fn redis_ns(&self) -> String {
        format!("{}-redis", self.tag)
    }

    /// Node `node`'s namespace.
    pub fn node_ns(&self, node: usize) -> String {
        format!("{}-n{node}", self.tag)
    }

    /// Redis's front address (the test process's way to Redis).
    pub fn redis_front(&self) -> String {
        front_pair(self.block, 0).1
    }

    /// Node `node`'s front address (its clients' way in; the node binds to it).
    pub fn node_front(&self, node: usize) -> String {
        front_pair(self.block, node + 1).1
    }

    /// Redis's address on node `node`'s back link (the node's way to Redis).
    pub fn redis_back(node: usize) -> String {
        back_pair(node).0
    }

    /// Sets node `node`'s back link down (`up` false) or up.
    pub fn set_back(&self, node: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        must(run("ip", &["-n", &self.node_ns(node), "link", "set", "back", state]));
    }

    /// Makes node `node`'s back link drop every packet, both ways (`drop` true), or stop doing so.
    pub fn drop_on_back(&self, node: usize, drop: bool) {
        let ns = self.node_ns(node);
        let result = if drop {
            run("ip", &["netns", "exec", &ns, "nft", DROP_BACK])
        } else {
            run("ip", &["netns", "exec", &ns, "nft", "delete table inet rollcall_chaos"])
        };
        result.unwrap_or_else(|e| panic!("chaos tests need nftables (nft) for a lossy link: {e}"));
    }

    fn add_namespace(&mut self, ns: &str) {
        run("ip", &["netns", "add", ns])
            .unwrap_or_else(|e| panic!("chaos tests need root and iproute2 (ip netns): {e}"));
        self.namespaces.push(ns.to_owned());
        must(run("ip", &["-n", ns, "link", "set", "lo", "up"]));
    }

    /// A veth pair from the root namespace (where the test's clients are) to `ns`.
    fn add_front(&self, ns: &str, link: usize) {
        let (outside, inside) = front_pair(self.block, link);
        let root_end = format!("rcf{}x{link}", self.block);
        must(run("ip", &["link", "add", &root_end, "type", "veth", "peer", "name", "front", "netns", ns]));
        must(run("ip", &["addr", "add", &format!("{outside}/30"), "dev", &root_end]));
        must(run("ip", &["link", "set", &root_end, "up"]));
        must(run("ip", &["-n", ns, "addr", "add", &format!("{inside}/30"), "dev", "front"]));
        must(run("ip", &["-n", ns, "link", "set", "front", "up"]));
    }

    /// A veth pair from node `node`'s namespace (`back`) to the Redis namespace (`n<node>`).
    fn add_back(&self, node: usize) {
        let (ns, redis_ns, redis_end) = (self.node_ns(node), self.redis_ns(), format!("n{node}"));
        let (redis_side, node_side) = back_pair(node);
        let pair = ["type", "veth", "peer", "name", &redis_end, "netns", &redis_ns];
        must(run("ip", &[&["link", "add", "back", "netns", &ns][..], &pair].concat()));
        must(run("ip", &["-n", &ns, "addr", "add", &format!("{node_side}/30"), "dev", "back"]));
        must(run("ip", &["-n", &redis_ns, "addr", "add", &format!("{redis_side}/30"), "dev", &redis_end]));
        must(run("ip", &["-n", &ns, "link", "set", "back", "up"]));
        must(run("ip", &["-n", &redis_ns, "link", "set", &redis_end, "up"]));
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("chaos lab cleanup: {e}");
            }
        }
    }
}

/// Root-side and namespace-side address of front link `link` of block `block` (a /30 each).
fn front_pair(block: u8, link: usize) -> (String, String) {
    let base = 4 * link;
    (format!("10.213.{block}.{}", base + 1), format!("10.213.{block}.{}", base + 2))
}

/// Redis-side and node-side address of node `node`'s back link. They exist only inside the
/// lab's namespaces, so every lab can use the same ones.
fn back_pair(node: usize) -> (String, String) {
    (format!("172.31.{node}.1"), format!("172.31.{node}.2"))
}

/// An exclusive lock shared by every test process on this machine, released on drop.
fn allocation_lock() -> std::fs::File {
    let path = std::env::temp_dir().join("rollcall-chaos.lock");
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.lock().unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    file
}

/// The lowest block `B` with no `rcf<B>x..` link in the root namespace.
fn free_block() -> u8 {
    let links = run("ip", &["-o", "link", "show"])
        .unwrap_or_else(|e| panic!("chaos tests need root and iproute2: {e}"));
    let used: Vec<u8> = links
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("rcf")?.split_once('x')?.0.parse().ok())
        .collect();
    (0..=u8::MAX).find(|b| !used.contains(b)).expect("a free chaos address block (256 labs at once?)")
}

/// Deletes the namespaces of test processes that died without dropping their labs, after
/// killing whatever still runs inside them. Once per test process.
fn clean_stale_labs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // If `ip` itself fails, `ip netns add` reports it with the clear message.
        let Ok(list) = run("ip", &["netns", "list"]) else { return };
        for ns in list.lines().filter_map(|line| line.split_whitespace().next()) {
            let Some(pid) = ns.strip_prefix(NS_PREFIX).and_then(|rest| rest.split('-').next()) else {
                continue;
            };
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue; // its test process still runs (this one, or another one)
            }
            for inside in run("ip", &["netns", "pids", ns]).unwrap_or_default().split_whitespace() {
                let _ = run("kill", &["-KILL", inside]);
            }
            match run("ip", &["netns", "del", ns]) {
                Ok(_) => eprintln!("removed stale chaos namespace {ns} (test process {pid} is gone)"),
                Err(e) => eprintln!("could not remove stale chaos namespace: {e}"),
            }
        }
    });
}

/// Runs a short command to completion: its stdout, or an error naming the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let shown = format!("{program} {}", args.join(" "));
    let output = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{shown}: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// The command's stdout; panics with its error.
pub fn must(result: Result<String, String>) -> String {
    result.unwrap_or_else(|e| panic!("{e}"))
}
