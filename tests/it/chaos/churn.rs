//! Random SIGKILLs of nodes while clients come and go. A seeded generator picks what happens and
//! when (the seed is printed; `CHAOS_SEED=<n>` replays a run): plain clients visit and leave,
//! reconnecting clients (as browsers) join, a node is killed and restarted with the same id after
//! a random downtime, sometimes shorter than `node_ttl_ms` (its old share is overwritten) and
//! sometimes longer (its old share is reaped first). After the churn stops, the count must be
//! exact everywhere.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rust_socketio::TransportType;

use super::{SETTINGS, exact_everywhere, measured, view};
use crate::helpers::{TestClient, connect, connect_reconnecting};
use crate::netns::Lab;

const NODES: usize = 3;
const STEPS: usize = 150;

/// SplitMix64: small, seedable and good enough to pick test actions.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }

    fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).expect("an index fits usize")
    }
}

/// The lab and everything the test knows about who is connected.
struct Churn {
    lab: Lab,
    rng: Rng,
    /// Reconnecting clients: after their node dies they come back once it is restarted.
    steady: Vec<TestClient>,
    /// Plain clients and their node: gone for good when that node dies.
    visitors: Vec<(usize, TestClient)>,
    /// The killed node (at most one at a time) and when to restart it.
    dead: Option<(usize, Instant)>,
    kills: usize,
}

impl Churn {
    fn truth(&self) -> i64 {
        i64::try_from(self.steady.len() + self.visitors.len()).expect("small count")
    }

    fn clients(&self) -> Vec<&TestClient> {
        self.steady.iter().chain(self.visitors.iter().map(|(_, c)| c)).collect()
    }

    fn live_node(&mut self) -> usize {
        let dead = self.dead.map(|(node, _)| node);
        let live: Vec<usize> = (0..NODES).filter(|n| Some(*n) != dead).collect();
        live[self.rng.index(live.len())]
    }

    async fn step(&mut self) {
        if let Some((node, at)) = self.dead
            && Instant::now() >= at
        {
            self.dead = None;
            self.lab.restart_node(node).await;
            return;
        }
        match self.rng.below(100) {
            0..8 if self.dead.is_none() => self.kill(),
            0..40 => {
                let node = self.live_node();
                self.visitors.push((node, connect(&self.lab.url(node), TransportType::Websocket).await));
            }
            40..65 if !self.visitors.is_empty() => {
                let index = self.rng.index(self.visitors.len());
                self.visitors.swap_remove(index).1.disconnect().await;
            }
            65..80 => {
                let node = self.live_node();
                self.steady.push(connect_reconnecting(&self.lab.url(node)).await);
            }
            _ => {}
        }
    }

    fn kill(&mut self) {
        let node = self.rng.index(NODES);
        self.lab.signal_node(node, "KILL");
        self.visitors.retain(|(on, _)| *on != node);
        let downtime = Duration::from_millis(200 + self.rng.below(2300));
        self.dead = Some((node, Instant::now() + downtime));
        self.kills += 1;
    }
}

fn seed() -> u64 {
    let replay = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok());
    replay.unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
        u64::try_from(now.as_nanos() % u128::from(u64::MAX)).expect("fits")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_node_kills_during_churn_end_exact_everywhere() {
    let seed = seed();
    eprintln!("chaos seed: {seed} (replay with CHAOS_SEED={seed})");
    let lab = Lab::start("chaos-kills", NODES, SETTINGS).await;
    let mut steady = Vec::new();
    for i in 0..30 {
        steady.push(connect_reconnecting(&lab.url(i % NODES)).await);
    }
    let mut churn = Churn { lab, rng: Rng(seed), steady, visitors: Vec::new(), dead: None, kills: 0 };
    exact_everywhere(&churn.lab, &churn.clients(), 30).await;

    let started = Instant::now();
    for _ in 0..STEPS {
        churn.step().await;
        // Pacing of the workload, not synchronisation: the test waits for nothing here.
        tokio::time::sleep(Duration::from_millis(10 + churn.rng.below(50))).await;
    }
    if let Some((node, _)) = churn.dead.take() {
        churn.lab.restart_node(node).await;
    }
    let stopped = Instant::now();
    let truth = churn.truth();
    eprintln!(
        "churn: {} ms, {} kills, {} reconnecting and {} plain clients left",
        started.elapsed().as_millis(),
        churn.kills,
        churn.steady.len(),
        churn.visitors.len()
    );
    exact_everywhere(&churn.lab, &churn.clients(), truth).await;
    measured("SIGKILL churn: exact everywhere after the last restart", stopped);
    let nodes = view(&churn.lab.url(0)).await.expect("n0 answers")["nodes"].clone();
    assert_eq!(nodes.as_array().map(Vec::len), Some(NODES), "every node is live once: {nodes}");
}
