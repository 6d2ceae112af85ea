//! The cluster count, behind a small trait with two drivers beside it.
//!
//! Each node owns one *share*: the number of sockets connected to it. The cluster total is the
//! sum of the live nodes' shares. A node never sends a delta: it sends its absolute share, and
//! the backend applies the difference atomically. That makes every write idempotent, so a
//! retried, re-seeded (after Redis lost its data) or re-added (after being reaped while alive)
//! share is never counted twice.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use memory::MemoryBackend;
pub use redis::{RedisBackend, RedisOptions};

/// One announced cluster total. Versions only grow, so a node can drop anything older than
/// what it has already shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Sockets connected to live nodes.
    pub total: i64,
    /// Position of this total in the order of all changes.
    pub version: u64,
}

/// What a share write did, besides producing the current snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareWrite {
    /// The total right after the write (or the current one, if nothing changed).
    pub snapshot: Snapshot,
    /// The node's share was missing before the write: first registration, the node was reaped
    /// while alive, or the backend lost its data. The write put it back.
    pub restored: bool,
    /// Dead nodes whose shares this write removed.
    pub reaped: u32,
    /// The live nodes after the write, this one included.
    pub nodes: Vec<NodeInfo>,
}

/// A live node as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeInfo {
    /// The node's id.
    pub id: String,
    /// Its share of the total.
    pub users: i64,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: u64,
}

/// A total as published, with the nodes the step that produced it reaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The total and its version.
    pub snapshot: Snapshot,
    /// Nodes whose shares this step removed (usually none): a node that finds itself here was
    /// reaped while alive, and this total does not hold its share.
    pub reaped: Vec<String>,
}

/// Pushed by a backend to the node that subscribed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// Another (or this) node announced a new total.
    Announced(Announcement),
    /// The update stream was (re)established: anything may have been missed, so re-read.
    Subscribed,
    /// The update stream broke; the backend is reconnecting.
    Unsubscribed,
}

/// Why a backend call failed. Callers never turn this into a number.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// No connection could be had from the pool.
    #[error("redis pool: {0}")]
    Pool(String),
    /// Redis did not answer within the command deadline.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered something this version of rollcall does not understand.
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
}

/// The count's storage and announcement channel. Chosen once at startup from the config.
#[async_trait]
pub trait PresenceBackend: Send + Sync + 'static {
    /// Heartbeats `node`, sets its share, removes the shares of expired nodes, and announces
    /// the new total to every subscriber if it changed — all in one atomic step. `floor` is the
    /// highest version the caller has seen: a backend that lost its data resumes above it.
    /// The reply is authoritative, and lists the live nodes (so nothing else reads them).
    async fn write_share(&self, node: &str, share: i64, floor: u64) -> Result<ShareWrite, BackendError>;

    /// Removes `node` and its share at once, announcing the drop (graceful shutdown).
    async fn deregister(&self, node: &str, floor: u64) -> Result<Snapshot, BackendError>;

    /// Starts delivering [`BackendEvent`]s into `events` until the receiver is dropped.
    fn subscribe(&self, events: mpsc::Sender<BackendEvent>);

    /// `"standalone"` or `"redis"`, as shown in `/api/presence`.
    fn mode(&self) -> &'static str;
}
