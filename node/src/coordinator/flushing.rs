//! Writing: one flush at a time (heartbeat + every changed share), its authoritative reply, and
//! announcements, which wait while a flush is in flight so the share counted in every shown count
//! is known.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;

use tokio::time::Instant;
use tracing::Instrument;

use super::{Coordinator, HELD_BACK_CAP};
use crate::count::{RoomName, Scope};
use crate::presence::{
    Announcement, BackendError, BackendEvent, Counts, Flush, FlushReply, MAX_VERSION, Reap, RoomShare,
    RoomUpdate, Share, group_of,
};

/// What a flush took from the local state, to give back if it fails and to read its reply.
pub struct Taken {
    /// `Coordinator::resync_epoch` when the flush started: only a write started after the last
    /// resubscription (or failed write) ends the resync.
    epoch: u64,
    /// This flush's number (`Coordinator::flushes_started` once it started).
    seq: u64,
    global: Share,
    global_counts: Counts,
    rooms: Vec<(RoomName, Share, Counts)>,
    reaps: Vec<Reap>,
    reaps_done: Vec<Reap>,
}

/// The flush in flight.
pub type InFlight = Pin<Box<dyn Future<Output = (Taken, Result<FlushReply, BackendError>)> + Send>>;

impl Coordinator {
    pub(super) fn maybe_flush(&mut self) {
        let now = Instant::now();
        let heartbeat_due =
            self.last_write.is_none_or(|at| now.duration_since(at) >= self.config.timing.heartbeat_interval);
        let vacancies_due = self.vacate_due.values().any(|due| *due <= now);
        let work = self.local.has_changes()
            || !self.pending_reaps.is_empty()
            || !self.reaps_done.is_empty()
            || vacancies_due;
        if self.in_flight.is_some() || now < self.retry_at || !(heartbeat_due || work) {
            return;
        }
        let tick_groups = self.tick_groups(now, heartbeat_due);
        let (global, mut rooms) = self.local.take_changes();
        if self.incarnation == 0 && !rooms.is_empty() {
            // No room is written before the backend has named this node's incarnation.
            self.local.restore(&Share::default(), &rooms);
            rooms.clear();
        }
        let groups = self.config.groups;
        self.flushes_started += 1;
        let touched: BTreeSet<u16> = rooms.iter().map(|(room, _)| group_of(room, groups)).collect();
        let held: BTreeSet<u16> = self.local.rooms().map(|room| group_of(room, groups)).collect();
        let taken = Taken {
            epoch: self.resync_epoch,
            seq: self.flushes_started,
            global_counts: self.local.counts(&Scope::Global),
            rooms: rooms
                .into_iter()
                .map(|(room, share)| {
                    let counts = self.local.counts(&Scope::Room(room.clone()));
                    (room, share, counts)
                })
                .collect(),
            global,
            reaps: if self.incarnation == 0 { Vec::new() } else { self.pending_reaps.clone() },
            reaps_done: std::mem::take(&mut self.reaps_done),
        };
        let flush = Flush {
            node: self.node_id.clone(),
            incarnation: self.incarnation,
            global: taken.global.clone(),
            global_floor: self.global.version(),
            groups_held: held.into_iter().collect(),
            rooms: taken
                .rooms
                .iter()
                .map(|(room, share, _)| RoomShare { room: room.clone(), share: share.clone() })
                .collect(),
            group_floors: touched
                .iter()
                .map(|g| (*g, self.group_versions.get(g).copied().unwrap_or(0)))
                .collect(),
            tick_groups,
            reaps: taken.reaps.clone(),
            reaps_done: taken.reaps_done.clone(),
        };
        let backend = self.backend.clone();
        let span = tracing::debug_span!("flush", node = %self.node_id, rooms = flush.rooms.len(), floor = flush.global_floor);
        self.in_flight = Some(Box::pin(
            async move {
                let result = backend.flush(&flush).await;
                (taken, result)
            }
            .instrument(span),
        ));
    }

    /// With webhooks on: the groups this flush visits for due `room.vacated` events — those
    /// known to be due, and every group every fifth heartbeat (vacancies another node scheduled
    /// and then could not produce, because it died).
    fn tick_groups(&mut self, now: Instant, heartbeat: bool) -> Vec<u16> {
        if self.config.hints.is_none() {
            return Vec::new();
        }
        if heartbeat {
            self.heartbeats_since_sweep += 1;
            if self.heartbeats_since_sweep >= 5 {
                self.heartbeats_since_sweep = 0;
                return (0..self.config.groups).collect();
            }
        }
        let due: Vec<u16> = self.vacate_due.iter().filter(|(_, at)| **at <= now).map(|(g, _)| *g).collect();
        for group in &due {
            self.vacate_due.remove(group);
        }
        due
    }

    pub(super) fn on_flushed(&mut self, taken: Taken, result: Result<FlushReply, BackendError>) {
        self.in_flight = None;
        match result {
            Ok(reply) => {
                let current = taken.epoch == self.resync_epoch;
                self.on_flush_succeeded(taken, reply);
                if current {
                    self.resyncing = false;
                }
            }
            Err(error) => self.on_flush_failed(taken, &error),
        }
        if !self.resyncing {
            for event in std::mem::take(&mut self.held_back) {
                self.on_event(event);
            }
        }
        self.drop_idle_rooms();
        self.publish_state();
    }

    fn on_flush_succeeded(&mut self, taken: Taken, reply: FlushReply) {
        let (was_degraded, first) = {
            let state = self.state.borrow();
            (state.degraded, !state.started)
        };
        self.last_write = Some(Instant::now());
        self.backoff.reset();
        self.local.acknowledge_global(&taken.global);
        if self.global.written(taken.global_counts, reply.global) {
            tracing::warn!(
                version = reply.global.version,
                "the shown count was newer than the backend's own; took the backend's (forged announcement or failover)"
            );
        }
        if reply.restored {
            if !first {
                self.metrics.reseeds.inc();
                tracing::warn!(node = %self.node_id, "this node was missing in the backend (data loss, or reaped while alive); writing every share again");
            }
            self.local.mark_all();
        }
        self.incarnation = reply.incarnation;
        self.metrics.nodes_alive.set(i64::try_from(reply.nodes.len()).unwrap_or(i64::MAX));
        if !reply.reaped.is_empty() {
            let _span =
                tracing::debug_span!("reap", node = %self.node_id, reaped = reply.reaped.len()).entered();
            self.metrics.nodes_reaped.inc_by(reply.reaped.len() as u64);
            tracing::info!(reaped = ?reply.reaped, "removed the shares of expired nodes");
        }
        if was_degraded {
            tracing::info!("backend reachable again; counts reconciled");
        }
        for (group, version) in &reply.group_versions {
            let seen = self.group_versions.entry(*group).or_default();
            *seen = (*seen).max(*version);
        }
        let written: HashMap<RoomName, Counts> =
            taken.rooms.into_iter().map(|(room, _, counts)| (room, counts)).collect();
        for room in written.keys() {
            if let Some(view) = self.rooms.get_mut(room) {
                view.written_seq = taken.seq;
            }
        }
        for update in reply.rooms {
            match written.get(&update.room) {
                Some(counts) => self.room_written(*counts, update),
                None => self.room_observed(update, false),
            }
        }
        for room in written.keys() {
            self.answer_waiters(room);
        }
        let now = Instant::now();
        for (group, in_ms) in &reply.vacate_due {
            self.vacate_due.insert(*group, now + std::time::Duration::from_millis(*in_ms));
        }
        for (group, kind) in &reply.produced {
            self.metrics.webhook_produced(kind.name());
            if let Some(hints) = &self.config.hints {
                hints.hint(*group);
            }
        }
        let performed = taken.reaps;
        self.pending_reaps = reply.pending_reaps.into_iter().filter(|r| !performed.contains(r)).collect();
        self.reaps_done = performed;
        self.metrics.degraded.set(0);
        let nodes = Some(reply.nodes.into());
        self.state.send_modify(|s| {
            s.degraded = false;
            s.started = true;
            s.nodes = nodes;
        });
    }

    fn on_flush_failed(&mut self, taken: Taken, error: &BackendError) {
        // The flush may or may not have landed: send the then-current shares again, and apply
        // no announcement until a reply says which share the backend counts (one announcing
        // this very write, applied with the old share, would count this node's change twice).
        self.begin_resync();
        let rooms: Vec<(RoomName, Share)> =
            taken.rooms.into_iter().map(|(room, share, _)| (room, share)).collect();
        self.local.restore(&taken.global, &rooms);
        self.reaps_done.extend(taken.reaps_done);
        self.retry_at = Instant::now() + self.backoff.next_delay();
        if !self.state.borrow().degraded {
            tracing::warn!(%error, "cannot write to the backend; serving the last known counts adjusted by local changes");
        }
        self.metrics.degraded.set(1);
        self.state.send_modify(|s| {
            s.degraded = true;
            s.started = true;
        });
    }

    /// This node's share of a room was written; `update` is the reply's authoritative count.
    fn room_written(&mut self, share: Counts, update: RoomUpdate) {
        if let Some(view) = self.rooms.get_mut(&update.room) {
            view.tally.written(share, update.snapshot);
            self.changed_rooms.insert(update.room.clone());
            self.deliver_members(&update);
            self.answer_waiters(&update.room);
        }
    }

    /// A room count from an announcement (or a reply to someone else's change).
    fn room_observed(&mut self, update: RoomUpdate, reaped_me: bool) {
        let Some(view) = self.rooms.get_mut(&update.room) else { return };
        let accepted = if reaped_me {
            view.tally.observe_reaped(update.snapshot)
        } else {
            view.tally.observe(update.snapshot)
        };
        if !accepted {
            self.metrics.stale_announcements.inc();
            return;
        }
        self.changed_rooms.insert(update.room.clone());
        self.deliver_members(&update);
        self.answer_waiters(&update.room);
    }

    pub(super) fn on_event(&mut self, event: BackendEvent) {
        if let BackendEvent::Subscribed = event {
            // Anything may have been missed while unsubscribed: write (and so re-read) every
            // scope at once, and apply nothing until that authoritative reply.
            self.last_write = None;
            self.local.mark_scopes();
            self.begin_resync();
            return;
        }
        if self.in_flight.is_some() || self.resyncing {
            if self.held_back.len() == HELD_BACK_CAP {
                self.held_back.pop_front();
            }
            self.held_back.push_back(event);
            return;
        }
        match event {
            BackendEvent::Announced(Announcement::Global { snapshot, reaped }) => {
                let accepted = if reaped.iter().any(|id| **id == *self.node_id) {
                    self.global.observe_reaped(snapshot)
                } else {
                    self.global.observe(snapshot)
                };
                if !accepted {
                    self.metrics.stale_announcements.inc();
                }
            }
            BackendEvent::Announced(Announcement::Rooms { group, version, rooms, reaped }) => {
                self.metrics.room_announcements.inc();
                if let Some(hints) = &self.config.hints {
                    hints.hint(group);
                }
                if version > MAX_VERSION {
                    // Forged: it would become a write floor the scripts cannot step past.
                    self.metrics.stale_announcements.inc();
                    return;
                }
                let seen = self.group_versions.entry(group).or_default();
                *seen = (*seen).max(version);
                let reaped_me = reaped.iter().any(|id| **id == *self.node_id);
                for update in rooms {
                    self.room_observed(update, reaped_me);
                }
            }
            BackendEvent::Subscribed | BackendEvent::Unsubscribed => {}
        }
        self.publish_state();
    }

    /// Holds announcements back until the reply to a write started from now on.
    fn begin_resync(&mut self) {
        self.resyncing = true;
        self.resync_epoch += 1;
    }

    /// At shutdown: waits for the flush in flight, then removes every share of this node at once.
    pub(super) async fn give_back(&mut self) {
        if let Some(flush) = self.in_flight.take() {
            let _ = flush.await;
        }
        // Every group: a share may remain where this node has no socket left (a zero not yet written).
        let groups: Vec<u16> = (0..self.config.groups).collect();
        match self.backend.deregister(&self.node_id, self.incarnation, &groups).await {
            Ok(()) => tracing::info!("gave this node's shares back"),
            Err(error) => {
                tracing::warn!(%error, "could not give this node's shares back; survivors will reap them after node_ttl_ms")
            }
        }
    }
}
