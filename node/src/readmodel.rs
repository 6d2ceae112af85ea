//! The one read model: what the HTTP handlers and the dashboard show about this node and the
//! cluster. Only the coordinator writes it; readers never block the coordinator and never touch
//! the backend.
//!
//! The live-node list comes from the coordinator's last successful write: every write (at least
//! one per heartbeat) is answered with the live nodes by the same atomic step that reaps the dead
//! ones. So `/api/presence` costs no backend call, cannot be used to load Redis, and its node
//! list is at most one heartbeat old and consistent with the total next to it.

use std::sync::Arc;

use rollcall_wire::{NodeDocument, PresenceDocument};
use tokio::sync::watch;

use crate::presence::{Counts, NodeInfo, RoomCount};

/// The coordinator's state, as last published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The number `refresh users` carries; `None` until one authoritative count was accepted.
    pub users: Option<i64>,
    /// The cluster's sockets and distinct users as this node shows them; `None` likewise.
    pub counts: Option<Counts>,
    /// Rooms with sockets on this node (or waiting for their count).
    pub rooms_local: usize,
    /// The busiest rooms this node follows, for the dashboard.
    pub top_rooms: Option<Arc<[RoomCount]>>,
    /// Sockets on this node.
    pub local: i64,
    /// The last write to the backend failed.
    pub degraded: bool,
    /// The first write to the backend has completed, successfully or not.
    pub started: bool,
    /// The live nodes, from the last successful write.
    pub nodes: Option<Arc<[NodeInfo]>>,
}

/// Whether a load balancer should send new clients here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Serving; `degraded` when the backend cannot be reached right now.
    Ready {
        /// The last write failed.
        degraded: bool,
    },
    /// The first write has not completed yet (bounded by `redis_timeout_ms`).
    Starting,
}

/// A cheap, cloneable reader of [`NodeState`].
#[derive(Debug, Clone)]
pub struct ReadModel {
    node_id: Arc<str>,
    mode: &'static str,
    state: watch::Receiver<NodeState>,
}

impl ReadModel {
    /// A reader for node `node_id` whose backend runs in `mode`.
    pub fn new(node_id: Arc<str>, mode: &'static str, state: watch::Receiver<NodeState>) -> Self {
        Self { node_id, mode, state }
    }

    /// A copy of the current state.
    pub fn state(&self) -> NodeState {
        self.state.borrow().clone()
    }

    /// Sockets on this node, as the coordinator counts them.
    pub fn local(&self) -> usize {
        usize::try_from(self.state.borrow().local).unwrap_or(0)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Ready once the first write completed, whatever its outcome: a backend outage must not
    /// take a whole fleet out of its load balancer, and a node without the backend still serves
    /// its sockets (it shows no number until it has heard one).
    pub fn readiness(&self) -> Readiness {
        let state = self.state.borrow();
        if state.started { Readiness::Ready { degraded: state.degraded } } else { Readiness::Starting }
    }

    /// The `/api/presence` document.
    pub fn presence(&self) -> PresenceDocument {
        let state = self.state.borrow();
        PresenceDocument {
            users: state.users,
            connections: state.counts.map(|c| c.connections),
            unique_users: state.counts.map(|c| c.users),
            node: self.node_id.to_string(),
            local: state.local,
            mode: self.mode.to_owned(),
            degraded: state.degraded,
            nodes: state.nodes.as_ref().map(|nodes| {
                nodes
                    .iter()
                    .map(|n| NodeDocument {
                        id: n.id.clone(),
                        users: n.users,
                        heartbeat_age_ms: n.heartbeat_age_ms,
                    })
                    .collect()
            }),
        }
    }
}
