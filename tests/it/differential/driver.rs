//! The simulated nodes of the differential test: each keeps its sockets in a real
//! `LocalPresence` and, per backend, what the coordinator keeps between flushes (incarnation,
//! floors, pending and completed reaps). A flush takes the changes once and sends the same
//! shares to both backends.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rollcall_node::count::{Identity, LocalPresence, RoomName, Scope, SocketId};
use rollcall_node::presence::{Flush, FlushReply, PresenceBackend, Reap, RoomShare, Share, group_of};

/// Room groups of both backends: few, so rooms share groups.
pub const GROUPS: u16 = 3;
/// Member changes are listed up to this many members: small, so truncation happens.
pub const MAX_MEMBERS_LISTED: u32 = 2;
/// Rooms a socket may hold.
const MAX_ROOMS: usize = 3;

/// What a node keeps about one backend between flushes.
#[derive(Debug, Default)]
pub struct Session {
    pub incarnation: u64,
    global_floor: u64,
    group_floors: HashMap<u16, u64>,
    pub pending_reaps: Vec<Reap>,
    pub reaps_done: Vec<Reap>,
}

impl Session {
    fn flush(&self, node: &str, global: &Share, rooms: &[(RoomName, Share)], held: &[u16]) -> Flush {
        let touched: BTreeSet<u16> = rooms.iter().map(|(room, _)| group_of(room, GROUPS)).collect();
        let reaps = if self.incarnation == 0 { Vec::new() } else { self.pending_reaps.clone() };
        Flush {
            node: node.into(),
            incarnation: self.incarnation,
            global: global.clone(),
            global_floor: self.global_floor,
            groups_held: held.to_vec(),
            rooms: rooms
                .iter()
                .map(|(room, share)| RoomShare { room: room.clone(), share: share.clone() })
                .collect(),
            group_floors: touched
                .iter()
                .map(|g| (*g, self.group_floors.get(g).copied().unwrap_or(0)))
                .collect(),
            tick_groups: Vec::new(),
            reaps,
            reaps_done: self.reaps_done.clone(),
        }
    }

    /// What the coordinator keeps from a reply to `flush`.
    fn replied(&mut self, flush: &Flush, reply: &FlushReply) {
        self.incarnation = reply.incarnation;
        self.global_floor = self.global_floor.max(reply.global.version);
        for (group, version) in &reply.group_versions {
            let floor = self.group_floors.entry(*group).or_default();
            *floor = (*floor).max(*version);
        }
        let performed = &flush.reaps;
        self.pending_reaps = reply.pending_reaps.iter().filter(|r| !performed.contains(r)).cloned().collect();
        self.reaps_done = performed.clone();
    }
}

/// One simulated node: its sockets, and its sessions with the Redis and the memory backend.
pub struct SimNode {
    pub name: String,
    pub local: LocalPresence,
    /// Connected sockets and their users.
    pub sockets: Vec<(u64, Option<u8>)>,
    pub redis: Session,
    pub memory: Session,
}

/// Both backends' replies to one flush.
pub struct Replies {
    pub redis: FlushReply,
    pub memory: FlushReply,
}

pub fn room_name(room: u8) -> RoomName {
    RoomName::new(&format!("room-{room}")).expect("valid")
}

/// A user's info: absent, or one of two versions (sockets of one user may carry either).
pub fn identity(user: u8, info: u8) -> Identity {
    let info = (info > 0).then(|| Arc::from(format!("{{\"name\":\"U{user}\",\"v\":{info}}}")));
    Identity { user: format!("user-{user}").into(), info }
}

impl SimNode {
    pub fn new(name: String) -> Self {
        Self {
            name,
            local: LocalPresence::new(),
            sockets: Vec::new(),
            redis: Session::default(),
            memory: Session::default(),
        }
    }

    /// A new process under the same node id: nothing counted, no incarnation.
    pub fn restart(&mut self) {
        *self = Self::new(std::mem::take(&mut self.name));
    }

    pub fn connect(&mut self, socket: u64, user: Option<(u8, u8)>) {
        let identity = user.map(|(user, info)| identity(user, info));
        if self.local.connect(SocketId(socket.into()), identity) {
            self.sockets.push((socket, user.map(|(user, _)| user)));
        }
    }

    fn pick(&self, pick: usize) -> Option<SocketId> {
        (!self.sockets.is_empty()).then(|| SocketId(self.sockets[pick % self.sockets.len()].0.into()))
    }

    pub fn disconnect(&mut self, pick: usize) {
        if let Some(id) = self.pick(pick) {
            self.local.disconnect(id);
            self.sockets.retain(|(s, _)| u128::from(*s) != id.0);
        }
    }

    pub fn join(&mut self, pick: usize, room: u8) {
        if let Some(id) = self.pick(pick) {
            let _ = self.local.join(id, &room_name(room), MAX_ROOMS);
        }
    }

    pub fn leave(&mut self, pick: usize, room: u8) {
        if let Some(id) = self.pick(pick) {
            self.local.leave(id, &room_name(room));
        }
    }

    /// One flush to both backends (the same shares; each backend's own session fields).
    pub async fn flush(&mut self, redis: &dyn PresenceBackend, memory: &dyn PresenceBackend) -> Replies {
        let (global, mut rooms) = self.local.take_changes();
        assert_eq!(
            self.redis.incarnation == 0,
            self.memory.incarnation == 0,
            "{}: registered in one backend only",
            self.name
        );
        if self.redis.incarnation == 0 && !rooms.is_empty() {
            // As the coordinator: no room is written before the backend named the incarnation.
            self.local.restore(&Share::default(), &rooms);
            rooms.clear();
        }
        let held: Vec<u16> =
            self.local.rooms().map(|r| group_of(r, GROUPS)).collect::<BTreeSet<_>>().into_iter().collect();
        let to_redis = self.redis.flush(&self.name, &global, &rooms, &held);
        let to_memory = self.memory.flush(&self.name, &global, &rooms, &held);
        let redis_reply = redis.flush(&to_redis).await.expect("redis flush");
        let memory_reply = memory.flush(&to_memory).await.expect("memory flush");
        assert_eq!(
            redis_reply.restored, memory_reply.restored,
            "{}: restored in one backend only",
            self.name
        );
        if redis_reply.restored {
            self.local.mark_all();
        }
        self.redis.replied(&to_redis, &redis_reply);
        self.memory.replied(&to_memory, &memory_reply);
        Replies { redis: redis_reply, memory: memory_reply }
    }

    /// Each socket's user and whether it is in `scope`.
    pub fn members_of<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = Option<u8>> + 'a {
        self.sockets.iter().filter_map(move |(socket, user)| {
            let inside = match scope {
                Scope::Global => true,
                Scope::Room(room) => self.local.rooms_of(SocketId((*socket).into())).contains(room),
            };
            inside.then_some(*user)
        })
    }
}
