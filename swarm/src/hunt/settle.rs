//! After a round: does every node (and every held client) show the truth? The truth is the
//! held clients connected now, plus per-node offsets: what the nodes showed before the hunt,
//! and every drift found so far (a leak is permanent, so it is added to the offset).

use std::time::{Duration, Instant};

use rollcall_wire::PresenceDocument;
use serde::Serialize;

use super::held::HeldPool;

/// How long one presence request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a settling hunt looks again.
const POLL: Duration = Duration::from_millis(50);

/// What one node says: `users` (the count its clients are sent) and `local` (its sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shown {
    /// The cluster count.
    pub users: i64,
    /// Sockets connected to this node.
    pub local: i64,
}

/// One look at everything: each node's presence (`None`: no answer), each held client's node
/// and last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sight {
    /// Per node, in `--url` order.
    pub nodes: Vec<Option<Shown>>,
    /// Per held client: its node and the last `refresh users` it got.
    pub clients: Vec<(usize, Option<i64>)>,
}

/// What the nodes show beyond the held clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    /// Per node: `users` minus held clients.
    pub users_offset: Vec<i64>,
    /// Per node: `local` minus held clients on that node.
    pub local_offset: Vec<i64>,
}

/// Expected and seen values of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeVerdict {
    /// Node index in `--url` order.
    pub node: usize,
    /// `users` it should show.
    pub expected_users: i64,
    /// `users` it showed (`None`: no answer).
    pub seen_users: Option<i64>,
    /// `local` it should show.
    pub expected_local: i64,
    /// `local` it showed.
    pub seen_local: Option<i64>,
}

/// The comparison of one [`Sight`] with the truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Every node, matching or not.
    pub nodes: Vec<NodeVerdict>,
    /// Held clients connected.
    pub held: usize,
    /// Held clients whose last value is not their node's expected `users`.
    pub stale_clients: usize,
}

impl Verdict {
    /// Whether everything shows the truth.
    pub fn settled(&self) -> bool {
        self.stale_clients == 0
            && self.nodes.iter().all(|node| {
                node.seen_users == Some(node.expected_users) && node.seen_local == Some(node.expected_local)
            })
    }
}

impl Expectation {
    /// Offsets that make `sight` the truth; `None` when a node did not answer.
    pub fn baseline(sight: &Sight) -> Option<Self> {
        let shown: Option<Vec<Shown>> = sight.nodes.iter().copied().collect();
        let held = sight.clients.len() as i64;
        let mut expectation = Expectation { users_offset: Vec::new(), local_offset: Vec::new() };
        for (node, shown) in shown?.into_iter().enumerate() {
            let held_here = sight.clients.iter().filter(|(on, _)| *on == node).count() as i64;
            expectation.users_offset.push(shown.users - held);
            expectation.local_offset.push(shown.local - held_here);
        }
        Some(expectation)
    }

    /// Takes what the nodes show now as the new truth (a drift is permanent); nodes that did
    /// not answer keep their offsets.
    pub fn rebaseline(&mut self, verdict: &Verdict) {
        for node in &verdict.nodes {
            if let (Some(users), Some(offset)) = (node.seen_users, self.users_offset.get_mut(node.node)) {
                *offset += users - node.expected_users;
            }
            if let (Some(local), Some(offset)) = (node.seen_local, self.local_offset.get_mut(node.node)) {
                *offset += local - node.expected_local;
            }
        }
    }

    /// Compares one sight with the truth.
    pub fn judge(&self, sight: &Sight) -> Verdict {
        let held = sight.clients.len();
        let expected_users = |node: usize| self.users_offset.get(node).copied().unwrap_or(0) + held as i64;
        let nodes = sight
            .nodes
            .iter()
            .enumerate()
            .map(|(node, shown)| {
                let held_here = sight.clients.iter().filter(|(on, _)| *on == node).count() as i64;
                NodeVerdict {
                    node,
                    expected_users: expected_users(node),
                    seen_users: shown.map(|shown| shown.users),
                    expected_local: self.local_offset.get(node).copied().unwrap_or(0) + held_here,
                    seen_local: shown.map(|shown| shown.local),
                }
            })
            .collect();
        let stale_clients =
            sight.clients.iter().filter(|&&(node, value)| value != Some(expected_users(node))).count();
        Verdict { nodes, held, stale_clients }
    }
}

/// Reads every node's `GET /api/presence`.
#[derive(Debug, Clone)]
pub struct Nodes {
    http: reqwest::Client,
    urls: Vec<String>,
}

impl Nodes {
    /// A reader of `urls` (each `http://host:port/api/presence`).
    pub fn new(urls: Vec<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        Ok(Self { http, urls })
    }

    /// Every node's id, or the first URL that does not answer.
    pub async fn ids(&self) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        for url in &self.urls {
            let document = self.document(url).await;
            ids.push(
                document
                    .map(|document| document.node)
                    .ok_or_else(|| anyhow::anyhow!("{url} does not answer"))?,
            );
        }
        Ok(ids)
    }

    /// Looks at every node and every held client once.
    pub async fn look(&self, pool: &mut HeldPool) -> Sight {
        let reads = self.urls.iter().map(|url| self.document(url));
        let documents = futures_util::future::join_all(reads).await;
        // A node that shows no number yet (it never reached its backend) is not settled.
        let nodes = documents
            .into_iter()
            .map(|d| d.and_then(|d| Some(Shown { users: d.users?, local: d.local })))
            .collect();
        pool.reap();
        Sight { nodes, clients: pool.values().collect() }
    }

    async fn document(&self, url: &str) -> Option<PresenceDocument> {
        let response = self.http.get(url).send().await.ok()?.error_for_status().ok()?;
        response.json().await.ok()
    }

    /// Looks until everything shows the truth or `timeout` passes; returns the last verdict.
    pub async fn settle(&self, pool: &mut HeldPool, expectation: &Expectation, timeout: Duration) -> Verdict {
        let deadline = Instant::now() + timeout;
        loop {
            let verdict = expectation.judge(&self.look(pool).await);
            if verdict.settled() || Instant::now() >= deadline {
                return verdict;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Looks until two looks `gap` apart agree (or `timeout` passes) and takes that as the
    /// starting truth; fails when a node does not answer.
    pub async fn baseline(
        &self,
        pool: &mut HeldPool,
        gap: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Expectation> {
        let deadline = Instant::now() + timeout;
        let mut last = self.look(pool).await;
        loop {
            tokio::time::sleep(gap).await;
            let now = self.look(pool).await;
            if now == last || Instant::now() >= deadline {
                return Expectation::baseline(&now).ok_or_else(|| {
                    anyhow::anyhow!("a node's /api/presence does not answer: {:?}", self.urls)
                });
            }
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(users: i64, local: i64) -> Option<Shown> {
        Some(Shown { users, local })
    }

    #[test]
    fn the_truth_is_the_held_clients_plus_the_offsets() {
        // Two nodes with 5 users before the hunt (2 on a, 3 on b), then 3 held clients.
        let before = Sight { nodes: vec![shown(5, 2), shown(5, 3)], clients: vec![] };
        let expectation = Expectation::baseline(&before).expect("both answered");
        let now = Sight {
            nodes: vec![shown(8, 4), shown(8, 4)],
            clients: vec![(0, Some(8)), (0, Some(8)), (1, Some(8))],
        };
        assert!(expectation.judge(&now).settled());
        let stale_client = Sight { clients: vec![(0, Some(8)), (0, Some(7)), (1, Some(8))], ..now.clone() };
        assert_eq!(expectation.judge(&stale_client).stale_clients, 1);
        assert!(!expectation.judge(&stale_client).settled());
        let silent_node = Sight { nodes: vec![shown(8, 4), None], ..now };
        assert!(!expectation.judge(&silent_node).settled());
        assert_eq!(Expectation::baseline(&silent_node), None);
    }

    #[test]
    fn a_drift_becomes_part_of_the_truth() {
        let mut expectation = Expectation { users_offset: vec![0, 0], local_offset: vec![0, 0] };
        // One leaked socket on node 1: both show 3 users for 2 held clients, node 1 one local too many.
        let leaked =
            Sight { nodes: vec![shown(3, 1), shown(3, 2)], clients: vec![(0, Some(3)), (1, Some(3))] };
        let verdict = expectation.judge(&leaked);
        assert!(!verdict.settled());
        assert_eq!(verdict.nodes[1].expected_local, 1);
        assert_eq!(verdict.nodes[1].seen_local, Some(2));
        expectation.rebaseline(&verdict);
        assert_eq!(expectation, Expectation { users_offset: vec![1, 1], local_offset: vec![0, 1] });
        assert!(expectation.judge(&leaked).settled());
    }
}
