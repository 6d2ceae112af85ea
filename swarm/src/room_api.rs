//! The rooms API of every node: many rooms' counts at once (`POST /api/rooms/counts`, batches
//! of 1000, every URL must agree), and the non-empty rooms under a prefix (`GET /api/rooms`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use rollcall_wire::{RoomCounts, RoomsPage, RoomsQuery};

use super::messages::Target;

/// Most rooms in one request (the API's limit).
pub const BATCH: usize = 1000;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pages one listing follows at most (a million rooms).
const MAX_PAGES: usize = 1000;

/// A reader of the rooms API of several nodes.
#[derive(Debug, Clone)]
pub struct RoomApi {
    http: reqwest::Client,
    /// Per node: `http://host:port[/base]/api`.
    bases: Vec<String>,
}

impl RoomApi {
    /// A reader of the targets' APIs.
    pub fn new(targets: &[Target]) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        let bases = targets.iter().map(|target| api_base(&target.presence_url)).collect();
        Ok(Self { http, bases })
    }

    /// Number of nodes read.
    pub fn nodes(&self) -> usize {
        self.bases.len()
    }

    /// Each room's `(connections, users)` as every node tells them: `None` where a node did not
    /// answer or the nodes disagree.
    pub async fn both_counts(&self, rooms: &[String]) -> Vec<Option<(i64, i64)>> {
        let reads = self.bases.iter().map(|base| self.counts_from(base, rooms));
        let per_node = futures_util::future::join_all(reads).await;
        (0..rooms.len())
            .map(|index| {
                let mut seen =
                    per_node.iter().map(|counts| counts.as_ref().and_then(|c| c.get(index).copied()));
                let first = seen.next().flatten()?;
                seen.all(|count| count == Some(first)).then_some(first)
            })
            .collect()
    }

    /// One node's `(connections, users)` of `rooms`, in order; `None` when any batch failed.
    async fn counts_from(&self, base: &str, rooms: &[String]) -> Option<Vec<(i64, i64)>> {
        let batches = rooms.chunks(BATCH).map(|batch| self.batch(base, batch));
        let answers = futures_util::future::join_all(batches).await;
        let mut counts = Vec::with_capacity(rooms.len());
        for (batch, answer) in rooms.chunks(BATCH).zip(answers) {
            let answer = answer?;
            if answer.rooms.len() != batch.len() || answer.rooms.iter().zip(batch).any(|(r, n)| &r.room != n)
            {
                return None;
            }
            counts.extend(answer.rooms.iter().map(|room| (room.connections, room.users)));
        }
        Some(counts)
    }

    async fn batch(&self, base: &str, rooms: &[String]) -> Option<RoomCounts> {
        let query = RoomsQuery { rooms: rooms.to_vec() };
        let response = self.http.post(format!("{base}/rooms/counts")).json(&query).send().await.ok()?;
        response.error_for_status().ok()?.json().await.ok()
    }

    /// Node `node`'s non-empty rooms named `<prefix>...`: name → connections.
    pub async fn list(&self, node: usize, prefix: &str) -> anyhow::Result<BTreeMap<String, i64>> {
        let rooms = self.list_both(node, prefix).await?;
        Ok(rooms.into_iter().map(|(name, (connections, _))| (name, connections)).collect())
    }

    /// Node `node`'s non-empty rooms named `<prefix>...`: name → (connections, users).
    pub async fn list_both(&self, node: usize, prefix: &str) -> anyhow::Result<BTreeMap<String, (i64, i64)>> {
        let base = self.bases.get(node).context("no such node")?;
        let mut rooms = BTreeMap::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("prefix", prefix.to_owned()), ("limit", BATCH.to_string())];
            query.extend(cursor.take().map(|cursor| ("cursor", cursor)));
            let response = self.http.get(format!("{base}/rooms")).query(&query).send().await?;
            let page: RoomsPage = response.error_for_status()?.json().await?;
            rooms.extend(page.rooms.into_iter().map(|room| (room.room, (room.connections, room.users))));
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(rooms),
            }
        }
        bail!("{base}/rooms?prefix={prefix} lists more than {} rooms", MAX_PAGES * BATCH)
    }
}

/// `http://host:port[/base]/api` from the presence URL `.../api/presence`.
fn api_base(presence_url: &str) -> String {
    presence_url.strip_suffix("/presence").unwrap_or(presence_url).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_base_follows_the_presence_url() {
        assert_eq!(api_base("http://127.0.0.1:3001/app/api/presence"), "http://127.0.0.1:3001/app/api");
    }
}
