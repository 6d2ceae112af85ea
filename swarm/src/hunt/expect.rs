//! The truth after a round, as pure values: the held clients connected now (and the rooms they
//! are in), plus per-node offsets: what the nodes showed before the hunt, and every drift found
//! so far (a leak is permanent, so it is added to the offset). A [`Sight`] is judged against it.

use std::collections::BTreeMap;

use serde::Serialize;

/// What one node says: `users` (the count its clients are sent) and `local` (its sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shown {
    /// The cluster count.
    pub users: i64,
    /// Sockets connected to this node.
    pub local: i64,
}

/// What one held client shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSight {
    /// Its node (index in `--url` order).
    pub node: usize,
    /// The last `refresh users` it got.
    pub value: Option<i64>,
    /// The room it is in (index of the hunt's rooms).
    pub room: Option<u32>,
    /// The last `room users` connections of that room.
    pub room_value: Option<i64>,
}

/// One look at everything: each node's presence and room listing (`None`: no answer), each
/// held client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sight {
    /// Per node, in `--url` order.
    pub nodes: Vec<Option<Shown>>,
    /// Per node: its `/api/rooms` listing of the hunt's rooms (name → connections).
    pub rooms: Vec<Option<BTreeMap<String, i64>>>,
    /// Per held client.
    pub clients: Vec<ClientSight>,
}

/// What the nodes show beyond the held clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    /// Per node: `users` minus held clients.
    pub users_offset: Vec<i64>,
    /// Per node: `local` minus held clients on that node.
    pub local_offset: Vec<i64>,
    /// Per node: each listed room's connections minus held clients in it (no zeros).
    pub room_offsets: Vec<BTreeMap<String, i64>>,
    /// The hunt's room names are `<room_prefix><index>`.
    pub room_prefix: String,
}

/// Expected and seen values of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeVerdict {
    /// Node index in `--url` order.
    pub node: usize,
    /// `users` it should show.
    pub expected_users: i64,
    /// `users` it showed (`None`: no answer).
    pub seen_users: Option<i64>,
    /// `local` it should show.
    pub expected_local: i64,
    /// `local` it showed.
    pub seen_local: Option<i64>,
}

/// A room whose count a node's API gives wrong (`None` seen: the node did not list its rooms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomVerdict {
    /// Node index in `--url` order.
    pub node: usize,
    /// The room.
    pub room: String,
    /// Connections it should have.
    pub expected: i64,
    /// Connections the node's API gave.
    pub seen: Option<i64>,
}

/// The comparison of one [`Sight`] with the truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Every node, matching or not.
    pub nodes: Vec<NodeVerdict>,
    /// Held clients connected.
    pub held: usize,
    /// Held clients whose last value is not their node's expected `users`.
    pub stale_clients: usize,
    /// Rooms whose count a node's API gives wrong.
    pub rooms: Vec<RoomVerdict>,
    /// Held clients in a room whose last `room users` is not that room's expected count.
    pub stale_room_clients: usize,
}

impl Verdict {
    /// Whether everything shows the truth.
    pub fn settled(&self) -> bool {
        self.stale_clients == 0
            && self.stale_room_clients == 0
            && self.rooms.is_empty()
            && self.nodes.iter().all(|node| {
                node.seen_users == Some(node.expected_users) && node.seen_local == Some(node.expected_local)
            })
    }
}

impl Expectation {
    /// Offsets that make `sight` the truth; `None` when a node did not answer.
    pub fn baseline(sight: &Sight, room_prefix: &str) -> Option<Self> {
        let shown: Option<Vec<Shown>> = sight.nodes.iter().copied().collect();
        let listed: Option<Vec<&BTreeMap<String, i64>>> = sight.rooms.iter().map(Option::as_ref).collect();
        let held = sight.clients.len() as i64;
        let mut expectation = Expectation {
            users_offset: Vec::new(),
            local_offset: Vec::new(),
            room_offsets: Vec::new(),
            room_prefix: room_prefix.to_owned(),
        };
        let held_rooms = expectation.held_rooms(sight);
        for (node, (shown, listed)) in shown?.into_iter().zip(listed?).enumerate() {
            let held_here = sight.clients.iter().filter(|client| client.node == node).count() as i64;
            expectation.users_offset.push(shown.users - held);
            expectation.local_offset.push(shown.local - held_here);
            let mut offsets = listed.clone();
            for (room, count) in &held_rooms {
                *offsets.entry(room.clone()).or_insert(0) -= count;
            }
            offsets.retain(|_, offset| *offset != 0);
            expectation.room_offsets.push(offsets);
        }
        Some(expectation)
    }

    /// Takes what the nodes show now as the new truth (a drift is permanent); nodes that did
    /// not answer keep their offsets.
    pub fn rebaseline(&mut self, verdict: &Verdict) {
        for node in &verdict.nodes {
            if let (Some(users), Some(offset)) = (node.seen_users, self.users_offset.get_mut(node.node)) {
                *offset += users - node.expected_users;
            }
            if let (Some(local), Some(offset)) = (node.seen_local, self.local_offset.get_mut(node.node)) {
                *offset += local - node.expected_local;
            }
        }
        for room in &verdict.rooms {
            let (Some(seen), Some(offsets)) = (room.seen, self.room_offsets.get_mut(room.node)) else {
                continue;
            };
            let offset = offsets.entry(room.room.clone()).or_insert(0);
            *offset += seen - room.expected;
            if *offset == 0 {
                offsets.remove(&room.room);
            }
        }
    }

    /// Held clients per room, by name.
    fn held_rooms(&self, sight: &Sight) -> BTreeMap<String, i64> {
        let mut rooms = BTreeMap::new();
        for room in sight.clients.iter().filter_map(|client| client.room) {
            *rooms.entry(format!("{}{room}", self.room_prefix)).or_insert(0) += 1;
        }
        rooms
    }

    /// The rooms node `node` should list: held clients per room plus its offsets, no zeros.
    fn expected_rooms(&self, node: usize, held_rooms: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
        let mut rooms = held_rooms.clone();
        for (room, offset) in self.room_offsets.get(node).into_iter().flatten() {
            *rooms.entry(room.clone()).or_insert(0) += offset;
        }
        rooms.retain(|_, count| *count != 0);
        rooms
    }

    /// Compares one sight with the truth.
    pub fn judge(&self, sight: &Sight) -> Verdict {
        let held = sight.clients.len();
        let expected_users = |node: usize| self.users_offset.get(node).copied().unwrap_or(0) + held as i64;
        let nodes = sight
            .nodes
            .iter()
            .enumerate()
            .map(|(node, shown)| {
                let held_here = sight.clients.iter().filter(|client| client.node == node).count() as i64;
                NodeVerdict {
                    node,
                    expected_users: expected_users(node),
                    seen_users: shown.map(|shown| shown.users),
                    expected_local: self.local_offset.get(node).copied().unwrap_or(0) + held_here,
                    seen_local: shown.map(|shown| shown.local),
                }
            })
            .collect();
        let stale_clients =
            sight.clients.iter().filter(|client| client.value != Some(expected_users(client.node))).count();
        let held_rooms = self.held_rooms(sight);
        let expected: Vec<BTreeMap<String, i64>> =
            (0..sight.nodes.len()).map(|node| self.expected_rooms(node, &held_rooms)).collect();
        let rooms = sight
            .rooms
            .iter()
            .enumerate()
            .flat_map(|(node, listed)| room_verdicts(node, &expected[node], listed));
        let stale_room_clients = sight
            .clients
            .iter()
            .filter(|client| {
                client.room.is_some_and(|room| {
                    let name = format!("{}{room}", self.room_prefix);
                    let count = expected.get(client.node).and_then(|rooms| rooms.get(&name)).copied();
                    client.room_value != Some(count.unwrap_or(0))
                })
            })
            .count();
        Verdict { nodes, held, stale_clients, rooms: rooms.collect(), stale_room_clients }
    }
}

/// The rooms one node lists wrong, or every expected one when it listed nothing.
fn room_verdicts(
    node: usize,
    expected: &BTreeMap<String, i64>,
    listed: &Option<BTreeMap<String, i64>>,
) -> Vec<RoomVerdict> {
    let verdict = |room: &String, expected: i64, seen: Option<i64>| RoomVerdict {
        node,
        room: room.clone(),
        expected,
        seen,
    };
    let Some(listed) = listed else {
        let mut unread: Vec<RoomVerdict> =
            expected.iter().map(|(room, &count)| verdict(room, count, None)).collect();
        if unread.is_empty() {
            unread.push(verdict(&String::new(), 0, None));
        }
        return unread;
    };
    let names: std::collections::BTreeSet<&String> = expected.keys().chain(listed.keys()).collect();
    names
        .into_iter()
        .filter_map(|room| {
            let (want, seen) =
                (expected.get(room).copied().unwrap_or(0), listed.get(room).copied().unwrap_or(0));
            (want != seen).then(|| verdict(room, want, Some(seen)))
        })
        .collect()
}

#[cfg(test)]
#[path = "expect_tests.rs"]
mod tests;
