//! rollcall's wire contract, shared by the node (which speaks it) and the load tester (which
//! checks it): Socket.IO event names and the JSON documents of the HTTP API. Outside clients
//! depend on these names; change them only with a new contract.

use serde::{Deserialize, Serialize};

/// Event sent to every client of namespace `/`: one integer, the cluster-wide count.
pub const REFRESH_EVENT: &str = "refresh users";

/// `GET /api/presence`: what one node shows and knows about the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceDocument {
    /// The count `refresh users` carries; `null` until the node has heard the cluster's total
    /// once (it shows no number before that).
    pub users: Option<i64>,
    /// The id of the node that answered.
    pub node: String,
    /// Sockets connected to that node.
    pub local: i64,
    /// `"standalone"` or `"redis"`.
    pub mode: String,
    /// True while the node cannot reach its backend.
    pub degraded: bool,
    /// The live nodes as of this node's last successful write; `null` before the first one.
    pub nodes: Option<Vec<NodeDocument>>,
}

/// One live node in [`PresenceDocument::nodes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDocument {
    /// The node's id.
    pub id: String,
    /// Its share of the count.
    pub users: i64,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: u64,
}
