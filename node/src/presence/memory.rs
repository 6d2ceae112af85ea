//! Standalone mode: the count lives in this process. One node, no Redis, same semantics.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{Announcement, BackendError, BackendEvent, NodeInfo, PresenceBackend, ShareWrite, Snapshot};

/// The in-memory backend of a standalone node.
#[derive(Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    shares: HashMap<String, (i64, Instant)>,
    version: u64,
    subscribers: Vec<mpsc::Sender<BackendEvent>>,
}

impl State {
    fn snapshot(&self) -> Snapshot {
        Snapshot { total: self.shares.values().map(|(share, _)| share).sum(), version: self.version }
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        self.shares
            .iter()
            .map(|(id, (users, at))| NodeInfo {
                id: id.clone(),
                users: *users,
                heartbeat_age_ms: u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    }

    /// Bumps the version and tells every subscriber; drops the ones that went away.
    fn announce(&mut self, floor: u64) -> Snapshot {
        self.version = self.version.max(floor) + 1;
        let snapshot = self.snapshot();
        self.subscribers.retain(|tx| {
            !matches!(
                tx.try_send(BackendEvent::Announced(Announcement { snapshot, reaped: Vec::new() })),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
        snapshot
    }
}

impl MemoryBackend {
    /// An empty count.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map half-written: recover the data.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl PresenceBackend for MemoryBackend {
    async fn write_share(&self, node: &str, share: i64, floor: u64) -> Result<ShareWrite, BackendError> {
        let mut state = self.lock();
        let previous = state.shares.insert(node.to_owned(), (share, Instant::now()));
        let snapshot = match previous {
            Some((old, _)) if old == share => state.snapshot(),
            _ => state.announce(floor),
        };
        Ok(ShareWrite { snapshot, restored: previous.is_none(), reaped: 0, nodes: state.nodes() })
    }

    async fn deregister(&self, node: &str, floor: u64) -> Result<Snapshot, BackendError> {
        let mut state = self.lock();
        state.shares.remove(node);
        Ok(state.announce(floor))
    }

    fn subscribe(&self, events: mpsc::Sender<BackendEvent>) {
        if events.try_send(BackendEvent::Subscribed).is_ok() {
            self.lock().subscribers.push(events);
        }
    }

    fn mode(&self) -> &'static str {
        "standalone"
    }
}
