//! The held clients: ordinary, well-behaved Socket.IO clients (the swarm's own [`client`]) that
//! join and stay across rounds, answering pings and recording `refresh users`. They are the
//! hunt's truth: the count every node should show is the number of them still connected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::client::{self, ClientCell, ClientEvent, ClientSpec};

/// How long a leaving client may take: its own close wait (2 s) and some slack.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// One held client.
#[derive(Debug)]
pub struct Held {
    /// The node (index in `--url` order) it is connected to.
    pub node: usize,
    cell: Arc<ClientCell>,
    stop: Option<oneshot::Sender<()>>,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    task: JoinHandle<()>,
}

/// Connects a client to `node` and returns it once the node acknowledged its CONNECT.
pub async fn join(spec: ClientSpec, node: usize) -> Result<Held, String> {
    let cell = Arc::new(ClientCell::default());
    let (stop, stop_rx) = oneshot::channel();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let task = tokio::spawn(client::run(spec, 0, Arc::clone(&cell), stop_rx, events_tx));
    match events.recv().await {
        Some(ClientEvent::Connected { .. }) => Ok(Held { node, cell, stop: Some(stop), events, task }),
        Some(ClientEvent::Ended { error, .. }) => Err(error.unwrap_or_else(|| "ended".to_owned())),
        None => Err("client_task_ended".to_owned()),
    }
}

impl Held {
    /// Leaves gracefully (`41`, close frame) and waits until the client has ended.
    pub async fn leave(mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let ended = async {
            while let Some(event) = self.events.recv().await {
                if matches!(event, ClientEvent::Ended { .. }) {
                    return;
                }
            }
        };
        let result = tokio::time::timeout(LEAVE_TIMEOUT, ended).await;
        self.task.abort();
        result.map_err(|_| "leave_timeout".to_owned())
    }

    /// The last `refresh users` value it received, if any.
    pub fn last_value(&self) -> Option<i64> {
        let value = self.cell.last_value.load(Ordering::Acquire);
        (value != client::NO_VALUE).then_some(value)
    }

    /// Why it ended on its own (closed by the node or the network), if it has.
    fn ended_on_its_own(&mut self) -> Option<String> {
        while let Ok(event) = self.events.try_recv() {
            if let ClientEvent::Ended { error, .. } = event {
                return Some(error.unwrap_or_else(|| "ended".to_owned()));
            }
        }
        None
    }
}

/// The held clients of a hunt.
#[derive(Debug, Default)]
pub struct HeldPool {
    clients: Vec<Held>,
    /// Held clients that a node (or the network) closed, by reason: no longer counted.
    pub dropped: BTreeMap<String, u64>,
}

impl HeldPool {
    /// Forgets the clients that ended on their own (counting them in `dropped`).
    pub fn reap(&mut self) {
        let mut kept = Vec::with_capacity(self.clients.len());
        for mut held in self.clients.drain(..) {
            match held.ended_on_its_own() {
                Some(reason) => *self.dropped.entry(reason).or_insert(0) += 1,
                None => kept.push(held),
            }
        }
        self.clients = kept;
    }

    /// Adds a client that joined.
    pub fn add(&mut self, held: Held) {
        self.clients.push(held);
    }

    /// Takes a client out of the pool (to leave): one on `node` if any, else any; `pick`
    /// chooses among them.
    pub fn take(&mut self, node: usize, pick: u32) -> Option<Held> {
        let on_node: Vec<usize> = (0..self.clients.len()).filter(|&i| self.clients[i].node == node).collect();
        let index = if on_node.is_empty() {
            (!self.clients.is_empty()).then(|| pick as usize % self.clients.len())?
        } else {
            on_node[pick as usize % on_node.len()]
        };
        Some(self.clients.swap_remove(index))
    }

    /// Held clients connected now.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Every held client: its node and the last value it received.
    pub fn values(&self) -> impl Iterator<Item = (usize, Option<i64>)> + '_ {
        self.clients.iter().map(|held| (held.node, held.last_value()))
    }

    /// Every held client leaves, all at once.
    pub async fn leave_all(&mut self) {
        let leaves = self.clients.drain(..).map(Held::leave);
        let _ = futures_util::future::join_all(leaves).await;
    }
}
