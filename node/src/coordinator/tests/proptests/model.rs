//! The cluster under test, the truth it must show (computed from the sockets the test connected),
//! and the checks of what the clients received.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::super::{FaultyBackend, TIMING, config, until};

use super::QUIET;
use super::harness::{LogClients, NodeBackend, Sent};
use crate::coordinator::{Command, Coordinator, SocketId};
use crate::count::{Identity, RoomName};
use crate::metrics::Metrics;
use crate::presence::Counts;
use crate::readmodel::NodeState;

/// One step of a case. Nodes and sockets are picked modulo what exists.
#[derive(Debug, Clone)]
pub enum Op {
    Connect { node: u8, user: Option<u8>, rooms: Vec<u8> },
    Disconnect { node: u8, pick: usize },
    Join { node: u8, pick: usize, room: u8 },
    Leave { node: u8, pick: usize, room: u8 },
    FailNext { node: u8, writes: u8 },
    LoseReply { node: u8 },
    Hold { node: u8 },
    Release { node: u8 },
    Break { node: u8 },
    Resubscribe { node: u8 },
    Wait { ms: u16 },
}

/// Which way the truth may move in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Mixed,
    Growing,
    Shrinking,
}

/// One scope's sockets, anonymous ones, and each signed user's nodes.
type ScopeSockets = (i64, i64, BTreeMap<u8, BTreeSet<usize>>);

/// `max_rooms_per_client` of the fixture's `config`.
const MAX_ROOMS: usize = 3;

/// What every node must show: the global count and each room's.
#[derive(Debug, Clone, Default, PartialEq)]
struct Truth {
    global: Counts,
    rooms: BTreeMap<u8, Counts>,
    /// Per scope (`None`: global), signed users with sockets on more than one node: until a
    /// write lands, a node adjusting the count by its own users may count each of them twice
    /// (or, when its socket of one leaves, not at all).
    shared: BTreeMap<Option<u8>, i64>,
}

impl Truth {
    fn room(&self, room: u8) -> Counts {
        self.rooms.get(&room).copied().unwrap_or_default()
    }

    fn shared(&self, room: u8) -> i64 {
        self.shared.get(&Some(room)).copied().unwrap_or_default()
    }
}

fn room_name(room: u8) -> RoomName {
    RoomName::new(&format!("r{room}")).expect("valid")
}

fn room_number(room: &RoomName) -> u8 {
    room.as_str()[1..].parse().expect("a room of the test")
}

struct Member {
    name: String,
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<NodeState>,
    clients: Arc<LogClients>,
    backend: Arc<NodeBackend>,
    release: Option<watch::Sender<bool>>,
    /// Connected sockets: user, rooms.
    sockets: BTreeMap<u64, (Option<u8>, BTreeSet<u8>)>,
    _stop: tokio_util::sync::DropGuard,
}

/// The nodes, and every truth the test went through (log entries point into it).
pub struct Cluster {
    shared: Arc<FaultyBackend>,
    members: Vec<Member>,
    truths: Vec<Truth>,
    next_socket: u64,
}

impl Cluster {
    pub fn start(nodes: usize) -> Self {
        let shared = Arc::new(FaultyBackend::default());
        let members = (0..nodes)
            .map(|n| {
                let name = format!("n{n}");
                let backend = Arc::new(NodeBackend::new(shared.clone()));
                let clients = Arc::new(LogClients::default());
                let (coordinator, commands, state) = Coordinator::new(
                    name.as_str().into(),
                    backend.clone(),
                    clients.clone(),
                    Arc::new(Metrics::new()),
                    config(TIMING),
                );
                let stop = CancellationToken::new();
                tokio::spawn(coordinator.run(stop.clone()));
                Member {
                    name,
                    commands,
                    state,
                    clients,
                    backend,
                    release: None,
                    sockets: BTreeMap::new(),
                    _stop: stop.drop_guard(),
                }
            })
            .collect();
        Self { shared, members, truths: Vec::new(), next_socket: 0 }
    }

    fn truth(&self) -> Truth {
        // Per scope (None: global): sockets, anonymous ones, and each signed user's nodes.
        let mut scopes: BTreeMap<Option<u8>, ScopeSockets> = BTreeMap::new();
        for (node, member) in self.members.iter().enumerate() {
            for (user, rooms) in member.sockets.values() {
                for scope in std::iter::once(None).chain(rooms.iter().map(|r| Some(*r))) {
                    let entry = scopes.entry(scope).or_default();
                    entry.0 += 1;
                    match user {
                        None => entry.1 += 1,
                        Some(u) => {
                            entry.2.entry(*u).or_default().insert(node);
                        }
                    }
                }
            }
        }
        let mut truth = Truth::default();
        for (scope, (connections, anonymous, users)) in scopes {
            let counts = Counts { connections, users: anonymous + users.len() as i64 };
            let shared = users.values().filter(|nodes| nodes.len() > 1).count() as i64;
            truth.shared.insert(scope, shared);
            match scope {
                None => truth.global = counts,
                Some(room) => {
                    truth.rooms.insert(room, counts);
                }
            }
        }
        truth
    }

    /// Records the truth now in every node's log; returns its index.
    pub fn mark_phase(&mut self) -> usize {
        self.truths.push(self.truth());
        let index = self.truths.len() - 1;
        for member in &self.members {
            member.clients.push(Sent::Truth(index));
        }
        index
    }

    fn member(&mut self, node: u8) -> &mut Member {
        let count = self.members.len();
        &mut self.members[usize::from(node) % count]
    }

    fn pick(&mut self, node: u8, pick: usize) -> Option<(&mut Member, u64)> {
        let member = self.member(node);
        let socket = *member.sockets.keys().nth(pick % member.sockets.len().max(1))?;
        Some((member, socket))
    }

    pub async fn run(&mut self, op: &Op) {
        match *op {
            Op::Connect { node, user, ref rooms } => {
                let socket = self.next_socket;
                self.next_socket += 1;
                let member = self.member(node);
                let mut joined = BTreeSet::new();
                for room in rooms {
                    if joined.len() < MAX_ROOMS {
                        joined.insert(*room);
                    }
                }
                member.sockets.insert(socket, (user, joined));
                member.clients.push(Sent::Connected(SocketId(socket.into())));
                let identity = user.map(|u| Identity { user: format!("u{u}").into(), info: None });
                let rooms = rooms.iter().map(|r| room_name(*r)).collect();
                let command =
                    Command::Connect { id: SocketId(socket.into()), identity, expires: None, rooms };
                member.commands.send(command).expect("coordinator runs");
            }
            Op::Disconnect { node, pick } => {
                if let Some((member, socket)) = self.pick(node, pick) {
                    member.sockets.remove(&socket);
                    member.clients.push(Sent::Gone(SocketId(socket.into())));
                    let command = Command::Disconnect { id: SocketId(socket.into()) };
                    member.commands.send(command).expect("coordinator runs");
                }
            }
            Op::Join { node, pick, room } => {
                if let Some((member, socket)) = self.pick(node, pick) {
                    let rooms = &mut member.sockets.get_mut(&socket).expect("picked").1;
                    if rooms.len() < MAX_ROOMS {
                        rooms.insert(room);
                    }
                    let id = SocketId(socket.into());
                    let reply = Box::new(|_| {});
                    let command = Command::Join { id, room: room_name(room), members: false, reply };
                    member.commands.send(command).expect("coordinator runs");
                }
            }
            Op::Leave { node, pick, room } => {
                if let Some((member, socket)) = self.pick(node, pick) {
                    member.sockets.get_mut(&socket).expect("picked").1.remove(&room);
                    let command = Command::Leave {
                        id: SocketId(socket.into()),
                        room: room_name(room),
                        reply: Box::new(|_| {}),
                    };
                    member.commands.send(command).expect("coordinator runs");
                }
            }
            Op::FailNext { node, writes } => {
                self.member(node).backend.fail_before.fetch_add(writes.into(), Ordering::SeqCst);
            }
            Op::LoseReply { node } => {
                self.member(node).backend.lose_reply.fetch_add(1, Ordering::SeqCst);
            }
            Op::Hold { node } => {
                let shared = self.shared.clone();
                let member = self.member(node);
                if member.release.is_none() {
                    member.release = Some(shared.hold_replies(&member.name));
                }
            }
            Op::Release { node } => {
                if let Some(release) = self.member(node).release.take() {
                    release.send_replace(true);
                }
            }
            Op::Break { node } => self.member(node).backend.break_subscription(),
            Op::Resubscribe { node } => self.member(node).backend.resubscribe(),
            Op::Wait { ms } => tokio::time::sleep(std::time::Duration::from_millis(ms.into())).await,
        }
        if matches!(op, Op::Connect { .. } | Op::Disconnect { .. } | Op::Join { .. } | Op::Leave { .. }) {
            self.mark_phase();
        }
        tokio::task::yield_now().await;
    }
}

mod checks;
