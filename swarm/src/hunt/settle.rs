//! After a round: does every node (and every held client) show the truth? Reads every node's
//! `/api/presence` and its listing of the hunt's rooms, and judges them with [`expect`].
//!
//! [`expect`]: super::expect

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rollcall_wire::PresenceDocument;

pub use super::expect::{ClientSight, Expectation, Shown, Sight, Verdict};
use super::held::HeldPool;
use crate::room_api::RoomApi;

/// How long one presence request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a settling hunt looks again.
const POLL: Duration = Duration::from_millis(50);

/// Reads every node's `GET /api/presence` and `GET /api/rooms?prefix=<the hunt's rooms>`.
#[derive(Debug, Clone)]
pub struct Nodes {
    http: reqwest::Client,
    urls: Vec<String>,
    rooms: RoomApi,
    room_prefix: String,
}

impl Nodes {
    /// A reader of `urls` (each `http://host:port/api/presence`), and of the rooms named
    /// `<room_prefix>...` through `rooms`.
    pub fn new(urls: Vec<String>, rooms: RoomApi, room_prefix: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        Ok(Self { http, urls, rooms, room_prefix })
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
        let listings = (0..self.rooms.nodes()).map(|node| self.listing(node));
        let (documents, rooms) =
            tokio::join!(futures_util::future::join_all(reads), futures_util::future::join_all(listings));
        // A node that shows no number yet (it never reached its backend) is not settled.
        let nodes = documents
            .into_iter()
            .map(|d| d.and_then(|d| Some(Shown { users: d.users?, local: d.local })))
            .collect();
        pool.reap();
        Sight { nodes, rooms, clients: pool.sights().collect() }
    }

    async fn listing(&self, node: usize) -> Option<BTreeMap<String, i64>> {
        self.rooms.list(node, &self.room_prefix).await.ok()
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
                return Expectation::baseline(&now, &self.room_prefix).ok_or_else(|| {
                    anyhow::anyhow!("a node's /api/presence or /api/rooms does not answer: {:?}", self.urls)
                });
            }
            last = now;
        }
    }
}
