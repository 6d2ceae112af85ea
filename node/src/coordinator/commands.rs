//! Connects, disconnects, joins and leaves: the local bookkeeping, greetings and acks.

use tokio::time::Instant;

use super::Coordinator;
use super::api::{Command, Greeted, RoomReply};
use super::rooms::{RoomView, Waiter};
use crate::count::{Identity, RoomName, Scope, SocketId};

impl Coordinator {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::Connect { id, identity, expires, rooms } => {
                self.connect(id, identity, rooms);
                if let Some(expires) = expires.filter(|_| self.local.is_connected(id)) {
                    self.expiries.set(id, expires);
                }
            }
            Command::Refresh { id, expires } => {
                if self.local.is_connected(id) {
                    self.expiries.set(id, expires);
                }
            }
            Command::Unwritten { user, reply } => {
                let _ = reply.send(self.local.unwritten(&user));
                return;
            }
            Command::Disconnect { id } => {
                let _span = tracing::debug_span!("disconnect", node = %self.node_id, socket = id.0).entered();
                self.disconnect(id);
            }
            Command::Join { id, room, members, reply } => {
                match self.local.join(id, &room, self.config.limits.max_rooms_per_client) {
                    Err(error) => {
                        self.metrics.refuse_join(if self.local.is_connected(id) {
                            "max_rooms"
                        } else {
                            "not_connected"
                        });
                        reply(RoomReply::Refused(error.to_string()));
                    }
                    Ok(joined) => {
                        if joined {
                            self.metrics.room_joins.inc();
                        }
                        self.clients.enter(id, &room, members);
                        // A member list read before this join is written would miss the joiner.
                        let waiter = if joined && members {
                            Waiter::JoinWritten(id, reply, self.flushes_started)
                        } else {
                            Waiter::Join(id, reply)
                        };
                        self.follow(room, waiter);
                    }
                }
            }
            Command::Leave { id, room, reply } => self.leave(id, room, reply),
        }
        self.publish_state();
    }

    fn connect(&mut self, id: SocketId, identity: Option<Identity>, rooms: Vec<RoomName>) {
        let _span = tracing::debug_span!("connect", node = %self.node_id, socket = id.0).entered();
        if !self.local.connect(id, identity) {
            return;
        }
        self.metrics.connects.inc();
        // Before the first authoritative count there is no number to greet with; the first
        // broadcast after it reaches this socket too.
        if let Some(value) = self.global_value() {
            match self.clients.greet(id, value) {
                Greeted::Delivered => self.global_pacer.greeted(value),
                Greeted::Gone => {
                    if self.disconnect(id) {
                        self.metrics.gone_at_greeting.inc();
                    }
                    return;
                }
            }
        }
        for room in rooms {
            // Validated and limited at the handshake.
            if self.local.join(id, &room, self.config.limits.max_rooms_per_client).is_ok() {
                self.metrics.room_joins.inc();
                self.clients.enter(id, &room, false);
                self.follow(room, Waiter::Greet(id));
            }
        }
    }

    /// Removes socket `id` everywhere; false if it was not counted.
    pub(super) fn disconnect(&mut self, id: SocketId) -> bool {
        let Some(rooms) = self.local.disconnect(id) else { return false };
        self.expiries.remove(id);
        self.metrics.disconnects.inc();
        for room in rooms {
            self.metrics.room_leaves.inc();
            if let Some(view) = self.rooms.get_mut(&room) {
                view.waiting.retain(|w| w.socket() != Some(id));
            }
            self.changed_rooms.insert(room);
        }
        true
    }

    fn leave(&mut self, id: SocketId, room: RoomName, reply: super::ReplyTo) {
        if self.local.leave(id, &room) {
            self.metrics.room_leaves.inc();
            self.clients.exit(id, &room);
            if let Some(view) = self.rooms.get_mut(&room) {
                let waiting = std::mem::take(&mut view.waiting);
                view.waiting = waiting.into_iter().filter_map(|w| w.after_leaving(id)).collect();
            }
            self.follow(room, Waiter::Leave(reply));
        } else if self.rooms.get(&room).is_some_and(|v| v.tally.is_known()) {
            self.follow(room, Waiter::Leave(reply));
        } else {
            reply(RoomReply::NotFollowed(room));
        }
    }

    /// Follows `room` (if not yet) and answers `waiter` now if its count is known, else later.
    fn follow(&mut self, room: RoomName, waiter: Waiter) {
        self.changed_rooms.insert(room.clone());
        let view = self.rooms.entry(room.clone()).or_insert_with(|| RoomView::new(Instant::now()));
        view.waiting.push(waiter);
        if view.tally.is_known() {
            self.answer_waiters(&room);
        }
    }

    /// Answers everyone waiting for `room`'s count, if it is known.
    pub(super) fn answer_waiters(&mut self, room: &RoomName) {
        let local = self.local.counts(&Scope::Room(room.clone()));
        let Some(view) = self.rooms.get_mut(room) else { return };
        let Some(counts) = view.tally.displayed(local) else { return };
        let mut gone = Vec::new();
        let mut unwritten = Vec::new();
        for waiter in std::mem::take(&mut view.waiting) {
            let greet = match waiter {
                Waiter::Greet(id) => Some(id),
                Waiter::JoinWritten(_, _, after) if view.written_seq <= after => {
                    unwritten.push(waiter);
                    None
                }
                Waiter::Join(id, reply) | Waiter::JoinWritten(id, reply, _) => {
                    reply(RoomReply::Counts(room.clone(), counts));
                    Some(id)
                }
                Waiter::Leave(reply) => {
                    reply(RoomReply::Counts(room.clone(), counts));
                    None
                }
            };
            if let Some(id) = greet {
                match self.clients.greet_room(id, room, counts) {
                    Greeted::Delivered => view.pacer.greeted(counts),
                    Greeted::Gone => gone.push(id),
                }
            }
        }
        view.waiting.extend(unwritten);
        for id in gone {
            if self.disconnect(id) {
                self.metrics.gone_at_greeting.inc();
            }
        }
    }

    /// Drops every counted socket the Socket.IO layer no longer holds: closed without a
    /// disconnect reaching the coordinator, and not caught by a greeting.
    pub(super) fn sweep(&mut self) {
        let Some(live) = self.clients.live() else { return };
        let orphans: Vec<SocketId> = self.local.sockets().filter(|id| !live.contains(id)).collect();
        if orphans.is_empty() {
            return;
        }
        for id in orphans {
            if self.disconnect(id) {
                self.metrics.orphan_sockets.inc();
            }
        }
        tracing::info!(
            count = self.metrics.orphan_sockets.get(),
            "removed sockets the Socket.IO layer no longer holds"
        );
        self.publish_state();
    }

    /// Closes the sockets whose token expired (past `exp` plus the leeway) without a fresh one.
    pub(super) fn close_expired(&mut self) {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let cutoff = now.saturating_sub(self.config.limits.token_leeway_secs);
        for id in self.expiries.take_due(cutoff) {
            self.metrics.tokens_expired.inc();
            self.clients.disconnect(id);
        }
    }

    /// Forgets rooms with no socket here and nobody waiting (after their zero share was written).
    pub(super) fn drop_idle_rooms(&mut self) {
        let local = &self.local;
        self.rooms.retain(|room, view| {
            !view.waiting.is_empty() || local.connections(&Scope::Room(room.clone())) > 0
        });
    }
}
