//! One room's aggregate over its nodes, and the step that sets one node's share in it: the
//! arithmetic every backend performs (the Redis scripts do the same in Lua, and the differential
//! tests hold the two against each other).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::presence::{Counts, Member, Share};

/// A room (or the global scope) summed over its nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    /// Per node: its sockets and, of those, anonymous ones.
    nodes: HashMap<String, (u32, u32)>,
    /// Per node: its sockets of each signed user.
    cells: HashMap<String, HashMap<Arc<str>, u32>>,
    /// Per signed user: sockets over all nodes, and public info.
    members: BTreeMap<Arc<str>, (i64, Option<Arc<str>>)>,
    counts: Counts,
}

/// What one step changed in an aggregate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transitions {
    /// Users whose first socket arrived.
    pub joined: Vec<Member>,
    /// Users whose last socket left.
    pub left: Vec<Member>,
}

impl Aggregate {
    /// The count.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// `node`'s sockets here.
    pub fn share_of(&self, node: &str) -> i64 {
        self.nodes.get(node).map_or(0, |(connections, _)| i64::from(*connections))
    }

    /// No sockets at all.
    pub fn is_empty(&self) -> bool {
        self.counts.connections == 0
    }

    /// Signed members, in user-id order: id, sockets, info.
    pub fn members(&self) -> impl Iterator<Item = (&Arc<str>, i64, Option<&Arc<str>>)> {
        self.members.iter().map(|(user, (connections, info))| (user, *connections, info.as_ref()))
    }

    /// `user`'s sockets over all nodes.
    pub fn member_connections(&self, user: &str) -> i64 {
        self.members.get(user).map_or(0, |(connections, _)| *connections)
    }

    /// Signed members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Sets `node`'s share (its user cells listed in `share` are absolute; others unchanged).
    pub fn set_share(&mut self, node: &str, share: &Share, out: &mut Transitions) {
        let (old_connections, old_anonymous) = self.nodes.get(node).copied().unwrap_or((0, 0));
        self.counts.connections += i64::from(share.connections) - i64::from(old_connections);
        self.counts.users += i64::from(share.anonymous) - i64::from(old_anonymous);
        if share.connections == 0 {
            self.nodes.remove(node);
        } else {
            self.nodes.insert(node.to_owned(), (share.connections, share.anonymous));
        }
        for cell in &share.users {
            self.set_cell(node, &cell.user, cell.connections, cell.info.clone(), out);
        }
    }

    /// Removes every share of `node`; returns whether it held any.
    pub fn remove_node(&mut self, node: &str, out: &mut Transitions) -> bool {
        let Some((connections, anonymous)) = self.nodes.remove(node) else {
            return false;
        };
        self.counts.connections -= i64::from(connections);
        self.counts.users -= i64::from(anonymous);
        let cells: Vec<Arc<str>> =
            self.cells.get(node).map(|c| c.keys().cloned().collect()).unwrap_or_default();
        for user in cells {
            self.set_cell(node, &user, 0, None, out);
        }
        true
    }

    fn set_cell(
        &mut self,
        node: &str,
        user: &Arc<str>,
        connections: u32,
        info: Option<Arc<str>>,
        out: &mut Transitions,
    ) {
        let node_cells = self.cells.entry(node.to_owned()).or_default();
        let old = if connections == 0 {
            node_cells.remove(user)
        } else {
            node_cells.insert(user.clone(), connections)
        };
        if node_cells.is_empty() {
            self.cells.remove(node);
        }
        let delta = i64::from(connections) - i64::from(old.unwrap_or(0));
        if delta == 0 {
            if let (Some(info), Some(entry)) = (info, self.members.get_mut(user)) {
                entry.1 = Some(info);
            }
            return;
        }
        let before = self.members.get(user).map_or(0, |m| m.0);
        let after = before + delta;
        if after > 0 {
            let entry = self.members.entry(user.clone()).or_insert((0, None));
            entry.0 = after;
            if info.is_some() {
                entry.1 = info;
            }
            if before == 0 {
                self.counts.users += 1;
                out.joined.push(Member { user: user.clone(), info: entry.1.clone() });
            }
        } else if let Some((_, info)) = self.members.remove(user) {
            self.counts.users -= 1;
            out.left.push(Member { user: user.clone(), info });
        }
    }
}

/// Joins and leaves that cancel out within one step (a user who left and came back in the same
/// step) are not changes.
pub fn net(mut transitions: Transitions) -> Transitions {
    let joined: Vec<Arc<str>> = transitions.joined.iter().map(|m| m.user.clone()).collect();
    let left: Vec<Arc<str>> = transitions.left.iter().map(|m| m.user.clone()).collect();
    transitions.joined.retain(|m| !left.contains(&m.user));
    transitions.left.retain(|m| !joined.contains(&m.user));
    transitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::UserCell;

    fn cell(user: &str, connections: u32) -> UserCell {
        UserCell { user: user.into(), connections, info: None }
    }

    #[test]
    fn one_person_with_tabs_on_two_nodes_is_one_user() {
        let mut room = Aggregate::default();
        let mut out = Transitions::default();
        room.set_share("a", &Share { connections: 3, anonymous: 1, users: vec![cell("alice", 2)] }, &mut out);
        room.set_share("b", &Share { connections: 1, anonymous: 0, users: vec![cell("alice", 1)] }, &mut out);
        assert_eq!(room.counts(), Counts { connections: 4, users: 2 });
        assert_eq!(out.joined.len(), 1, "alice joined once");
        let mut out = Transitions::default();
        assert!(room.remove_node("a", &mut out));
        assert_eq!(room.counts(), Counts { connections: 1, users: 1 });
        assert!(out.left.is_empty(), "alice still has a tab on b");
        room.set_share("b", &Share { connections: 0, anonymous: 0, users: vec![cell("alice", 0)] }, &mut out);
        assert_eq!(out.left.len(), 1);
        assert!(room.is_empty());
        assert_eq!(room, Aggregate::default(), "nothing left behind");
    }

    #[test]
    fn rewriting_the_same_share_changes_nothing() {
        let mut room = Aggregate::default();
        let share = Share { connections: 2, anonymous: 1, users: vec![cell("bob", 1)] };
        let mut out = Transitions::default();
        room.set_share("a", &share, &mut out);
        let before = room.clone();
        let mut again = Transitions::default();
        room.set_share("a", &share, &mut again);
        assert_eq!(room, before);
        assert_eq!(again, Transitions::default());
    }
}
