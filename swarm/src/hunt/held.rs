//! The held clients: ordinary, well-behaved Socket.IO clients (the swarm's own [`client`]) that
//! join and stay across rounds, answering pings and recording `refresh users` and the `room
//! users` of the room they are in (at most one, joined at connect or by event). They are the
//! hunt's truth: the count every node should show is the number of them still connected, and
//! each room's the number of them in it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::settle::ClientSight;
use crate::client::{self, ClientCell, ClientEvent, ClientSpec};
use crate::rooms::NO_ROOM;

/// How long a leaving client may take: its own close wait (2 s) and some slack.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack on top of the client's own ack timeout for a room move.
const MOVE_SLACK: Duration = Duration::from_secs(2);

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

/// Connects a client to `node` (in `room` unless it is [`NO_ROOM`]) and returns it once the node
/// acknowledged its CONNECT.
pub async fn join(spec: ClientSpec, node: usize, room: u32) -> Result<Held, String> {
    let cell = Arc::new(ClientCell::in_room(room));
    let (stop, stop_rx) = oneshot::channel();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let task = tokio::spawn(client::run(spec, 0, Arc::clone(&cell), stop_rx, events_tx));
    match events.recv().await {
        Some(ClientEvent::Connected { .. }) => Ok(Held { node, cell, stop: Some(stop), events, task }),
        Some(ClientEvent::Ended { error, .. }) => Err(error.unwrap_or_else(|| "ended".to_owned())),
        Some(ClientEvent::Moved { .. }) => Err("moved_before_connecting".to_owned()),
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

    /// Moves to `room` ([`NO_ROOM`]: leaves its room) by `leave` / `join` events and waits for
    /// the acks. Whatever the outcome, the client stays held and knows its room.
    pub async fn move_to(&mut self, room: u32, ack_timeout: Duration) -> Result<(), String> {
        self.cell.move_to(room);
        let moved = async {
            while let Some(event) = self.events.recv().await {
                match event {
                    ClientEvent::Moved { outcome, .. } => return outcome.error.map_or(Ok(()), Err),
                    ClientEvent::Ended { error, .. } => {
                        return Err(error.unwrap_or_else(|| "ended".to_owned()));
                    }
                    ClientEvent::Connected { .. } => {}
                }
            }
            Err("client_task_ended".to_owned())
        };
        tokio::time::timeout(ack_timeout + MOVE_SLACK, moved)
            .await
            .unwrap_or_else(|_| Err("move_timeout".to_owned()))
    }

    /// The room it is in, if any.
    pub fn room(&self) -> Option<u32> {
        Some(self.cell.room.load(Ordering::Acquire)).filter(|&room| room != NO_ROOM)
    }

    /// What it shows: its node, its last `refresh users`, its room and that room's last count.
    pub fn sight(&self) -> ClientSight {
        let known = |value: i64| (value != client::NO_VALUE).then_some(value);
        ClientSight {
            node: self.node,
            value: known(self.cell.last_value.load(Ordering::Acquire)),
            room: self.room(),
            room_value: known(self.cell.room_value.load(Ordering::Acquire)),
        }
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

    /// Takes a client out of the pool (to leave, or to work on): one on `node` if any, else
    /// any; `pick` chooses among them.
    pub fn take(&mut self, node: usize, pick: u32) -> Option<Held> {
        self.take_where(node, pick, |_| true)
    }

    /// Takes a client that passes `wanted` out of the pool, as [`HeldPool::take`] does.
    pub fn take_where(&mut self, node: usize, pick: u32, wanted: impl Fn(&Held) -> bool) -> Option<Held> {
        let fits: Vec<usize> = (0..self.clients.len()).filter(|&i| wanted(&self.clients[i])).collect();
        let on_node: Vec<usize> = fits.iter().copied().filter(|&i| self.clients[i].node == node).collect();
        let among = if on_node.is_empty() { fits } else { on_node };
        let index = *among.get(pick as usize % among.len().max(1))?;
        Some(self.clients.swap_remove(index))
    }

    /// Held clients connected now.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// What every held client shows.
    pub fn sights(&self) -> impl Iterator<Item = ClientSight> + '_ {
        self.clients.iter().map(Held::sight)
    }

    /// Every held client leaves, all at once.
    pub async fn leave_all(&mut self) {
        let leaves = self.clients.drain(..).map(Held::leave);
        let _ = futures_util::future::join_all(leaves).await;
    }
}
