//! Property tests of [`LocalPresence`] as a state machine: random connects, disconnects, joins
//! and leaves of anonymous sockets and of signed users with several sockets, flushes that land,
//! fail before landing or land without their reply, and data loss in the backend. The reference
//! is the set of sockets alone; every scope's truth is computed from it from scratch, and a model
//! backend applies the shares the flushes carry.
//!
//! `PROPTEST_CASES=20000 cargo test -p rollcall-node local::proptests` for a long run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, contextualize_config};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

use super::{Identity, LocalPresence, SocketId};
use crate::count::{RoomName, Scope};
use crate::presence::{Counts, Share};

/// Cases per run unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 256;
const MAX_ROOMS: usize = 2;

/// One scope as the backend (or the truth) holds it: sockets, anonymous ones, signed users'
/// sockets and info.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct View {
    connections: u32,
    anonymous: u32,
    users: BTreeMap<Arc<str>, (u32, Option<Arc<str>>)>,
}

#[derive(Debug, Clone)]
enum Step {
    Connect {
        socket: u8,
        user: Option<u8>,
    },
    Disconnect {
        socket: u8,
    },
    Join {
        socket: u8,
        room: u8,
    },
    Leave {
        socket: u8,
        room: u8,
    },
    /// A flush: it lands and is answered; fails before landing; or lands and its reply is lost.
    Flush {
        lands: bool,
        answered: bool,
    },
    /// The backend lost everything; the next reply says so and the node marks every scope.
    DataLoss,
}

/// The reference: each connected socket's user and rooms.
#[derive(Debug, Clone, Default)]
struct Sockets(BTreeMap<u8, (Option<u8>, BTreeSet<u8>)>);

fn user_name(user: u8) -> Arc<str> {
    format!("user{user}").into()
}

/// A user's public info: some users have it, some do not; always the same for one user.
fn info_of(user: u8) -> Option<Arc<str>> {
    user.is_multiple_of(2).then(|| format!("{{\"name\":\"U{user}\"}}").into())
}

fn room_name(room: u8) -> RoomName {
    RoomName::new(&format!("room-{room}")).expect("valid")
}

impl Sockets {
    /// Every non-empty scope, computed from the sockets alone.
    fn truth(&self) -> BTreeMap<Option<u8>, View> {
        let mut scopes: BTreeMap<Option<u8>, View> = BTreeMap::new();
        for (user, rooms) in self.0.values() {
            for scope in std::iter::once(None).chain(rooms.iter().map(|r| Some(*r))) {
                let view = scopes.entry(scope).or_default();
                view.connections += 1;
                match user {
                    None => view.anonymous += 1,
                    Some(u) => view.users.entry(user_name(*u)).or_insert((0, info_of(*u))).0 += 1,
                }
            }
        }
        scopes
    }
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Sockets;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Sockets> {
        Just(Sockets::default()).boxed()
    }

    fn transitions(state: &Sockets) -> BoxedStrategy<Step> {
        // Mostly sockets that exist, sometimes any (a late disconnect, a join of a stranger).
        let known: Vec<u8> = state.0.keys().copied().collect();
        let socket = if known.is_empty() {
            (0u8..12).boxed()
        } else {
            prop_oneof![4 => proptest::sample::select(known), 1 => 0u8..12].boxed()
        };
        prop_oneof![
            3 => (0u8..12, proptest::option::weighted(0.6, 0u8..4))
                .prop_map(|(socket, user)| Step::Connect { socket, user }),
            2 => socket.clone().prop_map(|socket| Step::Disconnect { socket }),
            4 => (socket.clone(), 0u8..3).prop_map(|(socket, room)| Step::Join { socket, room }),
            2 => (socket, 0u8..3).prop_map(|(socket, room)| Step::Leave { socket, room }),
            3 => (prop::bool::weighted(0.8), prop::bool::weighted(0.7))
                .prop_map(|(lands, answered)| Step::Flush { lands, answered }),
            1 => Just(Step::DataLoss),
        ]
        .boxed()
    }

    fn apply(mut state: Sockets, step: &Step) -> Sockets {
        match *step {
            Step::Connect { socket, user } => {
                state.0.entry(socket).or_insert((user, BTreeSet::new()));
            }
            Step::Disconnect { socket } => {
                state.0.remove(&socket);
            }
            Step::Join { socket, room } => {
                if let Some((_, rooms)) = state.0.get_mut(&socket)
                    && rooms.len() < MAX_ROOMS
                {
                    rooms.insert(room);
                }
            }
            Step::Leave { socket, room } => {
                if let Some((_, rooms)) = state.0.get_mut(&socket) {
                    rooms.remove(&room);
                }
            }
            Step::Flush { .. } | Step::DataLoss => {}
        }
        state
    }
}

/// The system under test and the backend its flushes write to.
struct Node {
    local: LocalPresence,
    backend: BTreeMap<Option<u8>, View>,
}

fn scope_key(room: &RoomName) -> Option<u8> {
    room.as_str().strip_prefix("room-").and_then(|n| n.parse().ok())
}

impl Node {
    /// What the backend does with one scope's absolute share: the listed user cells are set, the
    /// others stay as they were.
    fn write(&mut self, scope: Option<u8>, share: &Share) {
        let view = self.backend.entry(scope).or_default();
        view.connections = share.connections;
        view.anonymous = share.anonymous;
        for cell in &share.users {
            if cell.connections == 0 {
                view.users.remove(&cell.user);
            } else {
                view.users.insert(cell.user.clone(), (cell.connections, cell.info.clone()));
            }
        }
        if *view == View::default() {
            self.backend.remove(&scope);
        }
    }

    fn flush(&mut self, lands: bool, answered: bool) {
        let (global, rooms) = self.local.take_changes();
        assert!(!self.local.has_changes(), "a flush took every change");
        if lands {
            self.write(None, &global);
            for (room, share) in &rooms {
                self.write(scope_key(room), share);
            }
        }
        if !(lands && answered) {
            self.local.restore(&global, &rooms);
        }
    }
}

fn scope_of(key: Option<u8>) -> Scope {
    key.map_or(Scope::Global, |room| Scope::Room(room_name(room)))
}

struct LocalPresenceTest;

impl StateMachineTest for LocalPresenceTest {
    type SystemUnderTest = Node;
    type Reference = Reference;

    fn init_test(_: &Sockets) -> Node {
        Node { local: LocalPresence::new(), backend: BTreeMap::new() }
    }

    fn apply(mut node: Node, truth: &Sockets, step: Step) -> Node {
        let local = &mut node.local;
        match step {
            Step::Connect { socket, user } => {
                let identity = user.map(|u| Identity { user: user_name(u), info: info_of(u) });
                let fresh = !local.is_connected(SocketId(socket.into()));
                assert_eq!(local.connect(SocketId(socket.into()), identity), fresh);
            }
            Step::Disconnect { socket } => {
                let was_connected = local.is_connected(SocketId(socket.into()));
                assert_eq!(local.disconnect(SocketId(socket.into())).is_some(), was_connected);
            }
            Step::Join { socket, room } => {
                let _ = local.join(SocketId(socket.into()), &room_name(room), MAX_ROOMS);
            }
            Step::Leave { socket, room } => {
                local.leave(SocketId(socket.into()), &room_name(room));
            }
            Step::Flush { lands, answered } => {
                node.flush(lands, answered);
                if lands && answered {
                    assert_eq!(node.backend, truth.truth(), "the backend's view after a flush");
                    let rooms: BTreeSet<Option<u8>> = node.local.rooms().map(scope_key).collect();
                    let with_sockets: BTreeSet<Option<u8>> =
                        truth.truth().into_keys().filter(Option::is_some).collect();
                    assert_eq!(rooms, with_sockets, "rooms with no socket are gone after a flush");
                }
            }
            Step::DataLoss => {
                node.backend.clear();
                node.local.mark_all();
            }
        }
        node
    }

    fn check_invariants(node: &Node, truth: &Sockets) {
        let scopes = truth.truth();
        for key in std::iter::once(None).chain((0..3).map(Some)) {
            let view = scopes.get(&key).cloned().unwrap_or_default();
            let scope = scope_of(key);
            let users = i64::from(view.anonymous) + view.users.len() as i64;
            let expected = Counts { connections: view.connections.into(), users };
            assert_eq!(node.local.counts(&scope), expected, "{scope:?}");
            assert_eq!(node.local.connections(&scope), view.connections, "{scope:?}");
        }
        let sockets: BTreeSet<u8> = node.local.sockets().map(|id| id.0 as u8).collect();
        assert_eq!(sockets, truth.0.keys().copied().collect(), "the counted sockets");
        for (socket, (_, rooms)) in &truth.0 {
            let held: BTreeSet<u8> =
                node.local.rooms_of(SocketId((*socket).into())).iter().filter_map(scope_key).collect();
            assert_eq!(&held, rooms, "rooms of socket {socket}");
        }
    }

    fn teardown(mut node: Node, truth: Sockets) {
        // A failed flush and its retry converge: the next flush that lands makes the backend exact.
        node.flush(true, true);
        assert_eq!(node.backend, truth.truth(), "the backend's view after the retry");
    }
}

prop_state_machine! {
    #![proptest_config(contextualize_config(Config { cases: CASES, failure_persistence: None, ..Config::default() }))]

    /// The shares a flush carries make the backend equal the truth computed from the sockets; a
    /// failed flush and its retry converge; counts never go negative; rooms with no socket vanish.
    #[test]
    fn local_presence_writes_what_it_holds(sequential 1..60 => LocalPresenceTest);
}
