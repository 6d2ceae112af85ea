//! This node's own sockets and what each is in: the source of every share the node writes.
//! Pure state, so it is tested (and property-tested) without sockets, Redis or time.
//!
//! Every change marks its scope dirty; [`LocalPresence::take_changes`] hands the dirty scopes'
//! absolute shares to a flush. A flush that fails gives them back ([`LocalPresence::restore`]),
//! so a retry sends the then-current values: writes stay absolute and idempotent.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::count::{RoomName, Scope};
use crate::presence::{Counts, Share, UserCell};

/// Identifies one socket of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u128);

/// A signed identity: the user id and the public info shown to other members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`).
    pub user: Arc<str>,
    /// Public info (a JSON object, as text).
    pub info: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
struct LocalSocket {
    identity: Option<Identity>,
    rooms: Vec<RoomName>,
}

/// This node's sockets in one scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeLocal {
    connections: u32,
    anonymous: u32,
    users: HashMap<Arc<str>, (u32, Option<Arc<str>>)>,
    changed_users: HashSet<Arc<str>>,
}

impl ScopeLocal {
    /// What this node adds to the scope's count.
    pub fn counts(&self) -> Counts {
        Counts {
            connections: i64::from(self.connections),
            users: i64::from(self.anonymous) + i64::try_from(self.users.len()).unwrap_or(i64::MAX),
        }
    }

    /// Sockets here.
    pub fn connections(&self) -> u32 {
        self.connections
    }

    fn add(&mut self, identity: Option<&Identity>) {
        self.connections += 1;
        match identity {
            None => self.anonymous += 1,
            Some(id) => {
                let entry = self.users.entry(id.user.clone()).or_insert((0, None));
                entry.0 += 1;
                entry.1 = id.info.clone();
                self.changed_users.insert(id.user.clone());
            }
        }
    }

    fn remove(&mut self, identity: Option<&Identity>) {
        self.connections -= 1;
        match identity {
            None => self.anonymous -= 1,
            Some(id) => {
                if let Some(entry) = self.users.get_mut(&id.user) {
                    entry.0 -= 1;
                    if entry.0 == 0 {
                        self.users.remove(&id.user);
                    }
                }
                self.changed_users.insert(id.user.clone());
            }
        }
    }

    /// The absolute share, with the user cells changed since the last time.
    fn take_share(&mut self) -> Share {
        let users = self
            .changed_users
            .drain()
            .map(|user| {
                let (connections, info) = self.users.get(&user).cloned().unwrap_or((0, None));
                UserCell { user, connections, info }
            })
            .collect();
        Share { connections: self.connections, anonymous: self.anonymous, users }
    }

    fn is_empty(&self) -> bool {
        self.connections == 0 && self.changed_users.is_empty()
    }
}

/// Why a room join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The socket already holds the most rooms it may.
    #[error("this connection is already in {0} rooms, the most allowed")]
    TooManyRooms(usize),
    /// The socket is not (or no longer) connected here.
    #[error("not connected")]
    NotConnected,
}

/// This node's sockets, per scope.
#[derive(Debug, Default)]
pub struct LocalPresence {
    sockets: HashMap<SocketId, LocalSocket>,
    scopes: HashMap<Scope, ScopeLocal>,
    dirty: HashSet<Scope>,
    /// Per signed user: this node's sockets (cluster-wide scope) as the backend last acknowledged.
    written_users: HashMap<Arc<str>, u32>,
}

impl LocalPresence {
    /// No sockets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Socket `id` connected. False (and nothing changes) if it already had.
    pub fn connect(&mut self, id: SocketId, identity: Option<Identity>) -> bool {
        if self.sockets.contains_key(&id) {
            return false;
        }
        self.scope_mut(Scope::Global).add(identity.as_ref());
        self.sockets.insert(id, LocalSocket { identity, rooms: Vec::new() });
        true
    }

    /// Socket `id` left; returns the rooms it was in (`None` if it was not connected).
    pub fn disconnect(&mut self, id: SocketId) -> Option<Vec<RoomName>> {
        let socket = self.sockets.remove(&id)?;
        self.scope_mut(Scope::Global).remove(socket.identity.as_ref());
        for room in &socket.rooms {
            self.scope_mut(Scope::Room(room.clone())).remove(socket.identity.as_ref());
        }
        Some(socket.rooms)
    }

    /// Socket `id` joins `room`, holding at most `max_rooms`. `Ok(false)`: it already was in it.
    pub fn join(&mut self, id: SocketId, room: &RoomName, max_rooms: usize) -> Result<bool, JoinError> {
        let socket = self.sockets.get_mut(&id).ok_or(JoinError::NotConnected)?;
        if socket.rooms.contains(room) {
            return Ok(false);
        }
        if socket.rooms.len() >= max_rooms {
            return Err(JoinError::TooManyRooms(max_rooms));
        }
        socket.rooms.push(room.clone());
        let identity = socket.identity.clone();
        self.scope_mut(Scope::Room(room.clone())).add(identity.as_ref());
        Ok(true)
    }

    /// Socket `id` leaves `room`. False if it was not in it.
    pub fn leave(&mut self, id: SocketId, room: &RoomName) -> bool {
        let Some(socket) = self.sockets.get_mut(&id) else { return false };
        let Some(at) = socket.rooms.iter().position(|r| r == room) else { return false };
        socket.rooms.swap_remove(at);
        let identity = socket.identity.clone();
        self.scope_mut(Scope::Room(room.clone())).remove(identity.as_ref());
        true
    }

    /// Whether socket `id` is connected here.
    pub fn is_connected(&self, id: SocketId) -> bool {
        self.sockets.contains_key(&id)
    }

    /// The rooms socket `id` is in.
    pub fn rooms_of(&self, id: SocketId) -> &[RoomName] {
        self.sockets.get(&id).map_or(&[], |s| &s.rooms)
    }

    /// Every counted socket.
    pub fn sockets(&self) -> impl Iterator<Item = SocketId> + '_ {
        self.sockets.keys().copied()
    }

    /// This node's part of `scope` now.
    pub fn counts(&self, scope: &Scope) -> Counts {
        self.scopes.get(scope).map(ScopeLocal::counts).unwrap_or_default()
    }

    /// Sockets here in `scope`.
    pub fn connections(&self, scope: &Scope) -> u32 {
        self.scopes.get(scope).map_or(0, ScopeLocal::connections)
    }

    /// Rooms with at least one socket here.
    pub fn rooms(&self) -> impl Iterator<Item = &RoomName> + '_ {
        self.scopes.keys().filter_map(|scope| match scope {
            Scope::Room(room) => Some(room),
            Scope::Global => None,
        })
    }

    /// Whether any scope changed since the last [`LocalPresence::take_changes`].
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The absolute shares of every scope that changed, and clears the marks. The global scope
    /// is always included (every flush is a heartbeat).
    pub fn take_changes(&mut self) -> (Share, Vec<(RoomName, Share)>) {
        let mut rooms = Vec::new();
        for scope in std::mem::take(&mut self.dirty) {
            if let Scope::Room(room) = scope {
                let share = self.scopes.get_mut(&Scope::Room(room.clone())).map(ScopeLocal::take_share);
                rooms.push((room, share.unwrap_or_default()));
            }
        }
        let global = self.scopes.entry(Scope::Global).or_default().take_share();
        self.scopes.retain(|scope, local| *scope == Scope::Global || !local.is_empty());
        (global, rooms)
    }

    /// A flush failed: its scopes and user cells are dirty again (their current values will go).
    pub fn restore(&mut self, global: &Share, rooms: &[(RoomName, Share)]) {
        self.mark(Scope::Global, &global.users);
        for (room, share) in rooms {
            self.mark(Scope::Room(room.clone()), &share.users);
        }
    }

    /// The backend acknowledged this global share: remember its user cells as written.
    pub fn acknowledge_global(&mut self, share: &Share) {
        for cell in &share.users {
            if cell.connections == 0 {
                self.written_users.remove(&cell.user);
            } else {
                self.written_users.insert(cell.user.clone(), cell.connections);
            }
        }
    }

    /// `user`'s sockets here that the backend does not hold yet (negative: it holds too many).
    pub fn unwritten(&self, user: &str) -> i64 {
        let now = self.scopes.get(&Scope::Global).and_then(|g| g.users.get(user)).map_or(0, |(n, _)| *n);
        i64::from(now) - i64::from(self.written_users.get(user).copied().unwrap_or(0))
    }

    /// The backend lost this node's data (or reaped it): every scope and user cell is dirty.
    pub fn mark_all(&mut self) {
        self.written_users.clear();
        for (scope, local) in &mut self.scopes {
            local.changed_users.extend(local.users.keys().cloned());
            self.dirty.insert(scope.clone());
        }
    }

    /// Marks every scope changed without its users, so the next write carries each share (and
    /// its reply each scope's count) at the cost of one entry per scope.
    pub fn mark_scopes(&mut self) {
        self.dirty.extend(self.scopes.keys().cloned());
    }

    fn mark(&mut self, scope: Scope, users: &[UserCell]) {
        let local = self.scopes.entry(scope.clone()).or_default();
        local.changed_users.extend(users.iter().map(|cell| cell.user.clone()));
        self.dirty.insert(scope);
    }

    fn scope_mut(&mut self, scope: Scope) -> &mut ScopeLocal {
        self.dirty.insert(scope.clone());
        self.scopes.entry(scope).or_default()
    }
}

#[cfg(test)]
mod proptests;
