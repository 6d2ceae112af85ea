//! What leaves the coordinator: `refresh users` and `room users` broadcasts (paced), member
//! changes, and the state the read model shows.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Coordinator, PacingPolicy};
use crate::count::{RoomName, Scope};
use crate::presence::{RoomCount, RoomUpdate};

/// Busiest rooms shown on the dashboard.
const TOP_ROOMS: usize = 10;

impl Coordinator {
    /// The number `refresh users` carries now: sockets, or distinct users with
    /// `global_count = "users"`; `None` before the first authoritative count.
    pub(super) fn global_value(&self) -> Option<i64> {
        let counts = self.global.displayed(self.local.counts(&Scope::Global))?;
        Some(if self.config.limits.global_counts_users { counts.users } else { counts.connections })
    }

    /// Broadcasts every count that changed and is due.
    pub(super) async fn emit_due(&mut self) {
        self.send_member_changes().await;
        // Deferred: due at the bare emit interval, held back by the fan-out budget or by load.
        let base = PacingPolicy { max_fanout_per_sec: u64::MAX, ..self.config.timing.pacing };
        let policy = self.config.timing.pacing.stretched(self.governor.stretch());
        let recipients = u64::from(self.local.connections(&Scope::Global));
        self.metrics.fanout_interval.set(policy.interval_for(recipients).as_secs_f64());
        if let Some(value) = self.global_value() {
            if self.global_pacer.due(value, recipients, &policy, Instant::now()) {
                self.clients.broadcast(value).await;
                self.metrics.refresh_emits.inc();
                self.metrics.refresh_messages.inc_by(recipients);
                self.global_pacer.emitted(value, Instant::now());
            } else if self.global_pacer.due(value, recipients, &base, Instant::now()) {
                self.metrics.emits_deferred.inc();
            }
        }
        let changed: Vec<RoomName> = self.changed_rooms.iter().cloned().collect();
        for room in changed {
            let scope = Scope::Room(room.clone());
            let (local, recipients) = (self.local.counts(&scope), u64::from(self.local.connections(&scope)));
            let Some(view) = self.rooms.get_mut(&room) else {
                self.changed_rooms.remove(&room);
                continue;
            };
            let Some(counts) = view.tally.displayed(local) else { continue };
            if recipients == 0 || view.pacer.sent(counts) {
                self.changed_rooms.remove(&room);
            } else if view.pacer.due(counts, recipients, &policy, Instant::now()) {
                self.clients.broadcast_room(&room, counts).await;
                if let Some(view) = self.rooms.get_mut(&room) {
                    view.pacer.emitted(counts, Instant::now());
                }
                self.metrics.room_emits.inc();
                self.metrics.room_messages.inc_by(recipients);
                self.changed_rooms.remove(&room);
            } else if view.pacer.due(counts, recipients, &base, Instant::now()) {
                self.metrics.emits_deferred.inc();
            }
        }
    }

    /// Queues a room update's member changes for the sockets following them; they go out in
    /// this order with the next emit check.
    pub(super) fn deliver_members(&mut self, update: &RoomUpdate) {
        for member in &update.left {
            self.member_outbox.push_back((update.room.clone(), member.clone(), false));
        }
        for member in &update.joined {
            self.member_outbox.push_back((update.room.clone(), member.clone(), true));
        }
    }

    async fn send_member_changes(&mut self) {
        while let Some((room, member, joined)) = self.member_outbox.pop_front() {
            self.clients.member_change(&room, &member, joined).await;
        }
    }

    /// The read model's view of the coordinator.
    pub(super) fn publish_state(&self) {
        let global = self.global.displayed(self.local.counts(&Scope::Global));
        let value = self.global_value();
        let local = i64::from(self.local.connections(&Scope::Global));
        if let Some(counts) = global {
            self.metrics.cluster_users.set(value.unwrap_or(counts.connections));
            self.metrics.cluster_connections.set(counts.connections);
            self.metrics.cluster_unique_users.set(counts.users);
        }
        self.metrics.local_connections.set(local);
        let rooms_local = self.rooms.len();
        self.metrics.rooms_local.set(i64::try_from(rooms_local).unwrap_or(i64::MAX));
        self.state.send_if_modified(|s| {
            let changed =
                s.users != value || s.counts != global || s.local != local || s.rooms_local != rooms_local;
            s.users = value;
            s.counts = global;
            s.local = local;
            s.rooms_local = rooms_local;
            changed
        });
    }

    /// The busiest followed rooms, for the dashboard.
    pub(super) fn publish_top_rooms(&self) {
        let mut rooms: Vec<RoomCount> = self
            .rooms
            .iter()
            .filter_map(|(room, view)| {
                let counts = view.tally.displayed(self.local.counts(&Scope::Room(room.clone())))?;
                Some(RoomCount { room: room.clone(), counts })
            })
            .collect();
        rooms.sort_by(|a, b| {
            b.counts.connections.cmp(&a.counts.connections).then_with(|| a.room.cmp(&b.room))
        });
        rooms.truncate(TOP_ROOMS);
        let top: Arc<[RoomCount]> = rooms.into();
        self.state.send_if_modified(|s| {
            let changed = s.top_rooms.as_deref() != Some(&top[..]);
            s.top_rooms = Some(top);
            changed
        });
    }
}
