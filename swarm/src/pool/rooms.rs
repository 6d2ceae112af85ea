//! The pool's rooms: which room a new client joins, moving random clients to other rooms, when
//! this worker last changed each room's count, and what each room's clients show.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Outcome, Pool};
use crate::client::NO_VALUE;
use crate::identity::NO_USER;
use crate::messages::{RoomSummary, now_us};
use crate::mover::MoveOutcome;
use crate::rooms::{NO_ROOM, RoomPlan, RoomSampler};

/// Random slots a move looks at for a client to move before it gives up for this tick.
const MOVE_PROBES: usize = 32;

/// What the pool keeps about rooms.
pub(super) struct Rooms {
    plan: Arc<RoomPlan>,
    sampler: RoomSampler,
    /// This worker's own stream of the plan's seed: room choices replay with `--seed`.
    rng: ChaCha8Rng,
    /// Per room: when this worker last changed its count (µs since the epoch; 0: never).
    changes: Vec<u64>,
}

impl Rooms {
    /// The rooms of worker `index`.
    pub(super) fn new(plan: RoomPlan, index: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
        rng.set_stream(index as u64);
        let sampler = RoomSampler::new(&plan);
        let changes = vec![0; plan.count as usize];
        Self { plan: Arc::new(plan), sampler, rng, changes }
    }

    /// The plan, for the clients.
    pub(super) fn plan(&self) -> Arc<RoomPlan> {
        Arc::clone(&self.plan)
    }

    /// The room of a new client.
    pub(super) fn draw(&mut self) -> u32 {
        self.sampler.sample(&mut self.rng)
    }

    /// The room of every tab of `user`: drawn from the plan's distribution with a generator of
    /// the seed and the user alone, so every worker draws the same.
    pub(super) fn room_of_user(&self, user: u32) -> u32 {
        let mut rng = ChaCha8Rng::seed_from_u64(self.plan.seed);
        rng.set_stream(u64::from(user) | (1 << 63));
        self.sampler.sample(&mut rng)
    }

    /// Notes that `room`'s count changed at `at_us`.
    pub(super) fn changed(&mut self, room: u32, at_us: u64) {
        if let Some(last) = self.changes.get_mut(room as usize) {
            *last = (*last).max(at_us);
        }
    }
}

impl Pool {
    /// Asks one random active client that is not moving to move to another room; false when
    /// none was found (no rooms, or no such client among the slots probed).
    pub fn move_random(&mut self) -> bool {
        let Some(rooms) = &mut self.rooms else { return false };
        if self.slots.is_empty() {
            return false;
        }
        for _ in 0..MOVE_PROBES {
            let slot = rooms.rng.random_range(0..self.slots.len());
            let Some(live) = self.slots[slot].as_mut().filter(|live| live.active() && !live.moving) else {
                continue;
            };
            let room = live.cell.room.load(Ordering::Acquire);
            let to = rooms.sampler.sample_other(room, &mut rooms.rng);
            live.moving = true;
            live.cell.move_to(to);
            self.moving += 1;
            self.report.moves_attempted += 1;
            return true;
        }
        false
    }

    /// Books a finished move.
    pub(super) fn on_moved(&mut self, slot: usize, outcome: MoveOutcome) -> Option<Outcome> {
        let live = self.slots.get_mut(slot)?.as_mut()?;
        if std::mem::take(&mut live.moving) {
            self.moving = self.moving.saturating_sub(1);
        }
        let now = now_us();
        if let Some(rooms) = &mut self.rooms {
            for room in [outcome.left, outcome.joined].into_iter().flatten() {
                rooms.changed(room, now);
            }
        }
        match outcome.error {
            None => {
                self.report.moves_ok += 1;
                self.report.move_latency.record(outcome.latency_us);
                Some(Outcome::Moved)
            }
            Some(kind) => {
                self.report.moves_failed += 1;
                *self.report.errors.entry(format!("move_{kind}")).or_insert(0) += 1;
                Some(Outcome::MoveFailed)
            }
        }
    }

    /// Per room with active clients, or whose count this worker changed: what its clients show.
    pub fn room_summaries(&self) -> Vec<RoomSummary> {
        let Some(rooms) = &self.rooms else { return Vec::new() };
        let mut summaries: BTreeMap<u32, RoomSummary> = BTreeMap::new();
        for live in self.slots.iter().flatten().filter(|live| live.active()) {
            let room = live.cell.room.load(Ordering::Acquire);
            if room == NO_ROOM {
                continue;
            }
            let summary = summaries.entry(room).or_insert_with(|| empty(room, rooms));
            summary.clients += 1;
            let user = live.cell.user.load(Ordering::Acquire);
            if user != NO_USER {
                summary.user_ids.push(user);
            }
            let value = live.cell.room_value.load(Ordering::Acquire);
            if value == NO_VALUE {
                summary.without_value += 1;
                continue;
            }
            summary.min = summary.min.min(value);
            summary.max = summary.max.max(value);
            let users = live.cell.room_users.load(Ordering::Acquire);
            summary.users_min = summary.users_min.min(users);
            summary.users_max = summary.users_max.max(users);
            let changed = live.cell.room_changed_at_us.load(Ordering::Acquire);
            summary.latest_change_us = summary.latest_change_us.max(changed);
        }
        for (room, &last) in rooms.changes.iter().enumerate() {
            if last > 0 {
                summaries.entry(room as u32).or_insert_with(|| empty(room as u32, rooms));
            }
        }
        for summary in summaries.values_mut() {
            summary.user_ids.sort_unstable();
            summary.user_ids.dedup();
        }
        summaries.into_values().collect()
    }

    /// Active clients of the `(room, truth)` rooms whose value is not the truth (nor, with
    /// `user_truths`, their users), and how many of them never got a value.
    pub fn room_stale(&self, truths: &[(u32, i64)], user_truths: &[(u32, i64)]) -> (u64, u64) {
        let truths: BTreeMap<u32, i64> = truths.iter().copied().collect();
        let user_truths: BTreeMap<u32, i64> = user_truths.iter().copied().collect();
        let (mut stale, mut without_value) = (0, 0);
        for live in self.slots.iter().flatten().filter(|live| live.active()) {
            let room = live.cell.room.load(Ordering::Acquire);
            let Some(&truth) = truths.get(&room) else { continue };
            let value = live.cell.room_value.load(Ordering::Acquire);
            let users = live.cell.room_users.load(Ordering::Acquire);
            if value != truth || user_truths.get(&room).is_some_and(|&truth| users != truth) {
                stale += 1;
                without_value += u64::from(value == NO_VALUE);
            }
        }
        (stale, without_value)
    }
}

fn empty(room: u32, rooms: &Rooms) -> RoomSummary {
    RoomSummary {
        room,
        clients: 0,
        without_value: 0,
        min: i64::MAX,
        max: i64::MIN,
        users_min: i64::MAX,
        users_max: i64::MIN,
        user_ids: Vec::new(),
        latest_change_us: 0,
        last_change_us: rooms.changes.get(room as usize).copied().unwrap_or(0),
    }
}
