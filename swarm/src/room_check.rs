//! Per-room convergence: after the last change, every room with clients must have all of them
//! showing the room's true count (`POST /api/rooms/counts` on every URL, which must agree). A
//! room's convergence time runs from the swarm's last change of that room to the moment its
//! last client got the truth. With `--users`, the truth is both numbers: connections and
//! distinct users, and the users must be what was there before plus the swarm's distinct users.

use std::collections::BTreeMap;

use serde::Serialize;

use super::fleet::Fleet;
use super::histogram::Histogram;
use super::messages::{Command, Event, RoomSummary};
use super::room_api::RoomApi;
use super::rooms::RoomPlan;

/// One look at every room: what the clients show, and what the API says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomLook {
    /// Per room (merged over the workers).
    pub summaries: BTreeMap<u32, RoomSummary>,
    /// Per room: the agreed true connections (`None`: a node did not answer, or they disagree).
    pub truths: BTreeMap<u32, Option<i64>>,
    /// With `--users`, per room: the agreed true users (empty without `--users`).
    pub user_truths: BTreeMap<u32, Option<i64>>,
}

/// The judgement of one [`RoomLook`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomVerdict {
    /// Rooms with clients.
    pub with_clients: u64,
    /// Most clients in one room.
    pub largest: u64,
    /// Rooms whose clients all show the truth, with their convergence time (µs).
    pub converged: Vec<(u32, u64)>,
    /// Rooms with clients that do not all show the truth.
    pub stale: Vec<u32>,
    /// Rooms whose true count differs from what was there before plus the swarm's clients:
    /// `(room, expected, true count)`.
    pub mismatched: Vec<(u32, i64, i64)>,
    /// Rooms whose count the nodes did not agree on (or did not give).
    pub disagreed: u64,
    /// With `--users`: rooms whose true users differ from what was there before plus the
    /// swarm's distinct users in it: `(room, expected, true users)`.
    pub user_mismatched: Vec<(u32, i64, i64)>,
}

impl RoomVerdict {
    /// Whether every room with clients shows the truth.
    pub fn all_converged(&self) -> bool {
        self.stale.is_empty()
    }
}

/// Adds up the workers' summaries per room.
pub fn merge(per_worker: Vec<Vec<RoomSummary>>) -> BTreeMap<u32, RoomSummary> {
    let mut merged: BTreeMap<u32, RoomSummary> = BTreeMap::new();
    for summary in per_worker.into_iter().flatten() {
        let Some(room) = merged.get_mut(&summary.room) else {
            merged.insert(summary.room, summary);
            continue;
        };
        room.clients += summary.clients;
        room.without_value += summary.without_value;
        room.min = room.min.min(summary.min);
        room.max = room.max.max(summary.max);
        room.users_min = room.users_min.min(summary.users_min);
        room.users_max = room.users_max.max(summary.users_max);
        room.user_ids.extend(summary.user_ids);
        room.latest_change_us = room.latest_change_us.max(summary.latest_change_us);
        room.last_change_us = room.last_change_us.max(summary.last_change_us);
    }
    for room in merged.values_mut() {
        room.user_ids.sort_unstable();
        room.user_ids.dedup();
    }
    merged
}

/// With `--users`: a converged room must also have every client showing its true users, and
/// those must be `baseline_users` plus the swarm's distinct users in it.
pub fn judge_users(look: &RoomLook, baseline_users: &BTreeMap<u32, i64>, verdict: &mut RoomVerdict) {
    for (&room, summary) in &look.summaries {
        let truth = look.user_truths.get(&room).copied().flatten();
        let expected = baseline_users.get(&room).copied().unwrap_or(0) + summary.user_ids.len() as i64;
        if let Some(truth) = truth.filter(|&truth| truth != expected) {
            verdict.user_mismatched.push((room, expected, truth));
        }
    }
    let shows = |room: u32| {
        let summary = &look.summaries[&room];
        let truth = look.user_truths.get(&room).copied().flatten();
        truth.is_some_and(|truth| summary.users_min == truth && summary.users_max == truth)
    };
    let (converged, stale): (Vec<_>, Vec<_>) = verdict.converged.iter().partition(|&&(room, _)| shows(room));
    verdict.converged = converged;
    verdict.stale.extend(stale.into_iter().map(|(room, _)| room));
    verdict.stale.sort_unstable();
}

/// Judges a look; `baseline` holds the rooms' counts before the swarm began.
pub fn judge(look: &RoomLook, baseline: &BTreeMap<u32, i64>) -> RoomVerdict {
    let mut verdict = RoomVerdict::default();
    for (&room, summary) in &look.summaries {
        let truth = look.truths.get(&room).copied().flatten();
        let expected = baseline.get(&room).copied().unwrap_or(0) + summary.clients as i64;
        match truth {
            None => verdict.disagreed += 1,
            Some(truth) if truth != expected => verdict.mismatched.push((room, expected, truth)),
            Some(_) => {}
        }
        if summary.clients == 0 {
            continue;
        }
        verdict.with_clients += 1;
        verdict.largest = verdict.largest.max(summary.clients);
        let all_show =
            |truth: i64| summary.without_value == 0 && summary.min == truth && summary.max == truth;
        if truth.is_some_and(all_show) {
            let took = summary.latest_change_us.saturating_sub(summary.last_change_us);
            verdict.converged.push((room, took));
        } else {
            verdict.stale.push(room);
        }
    }
    verdict
}

/// The result of waiting for every room to converge; in the report as is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RoomSettle {
    /// Whether every room with clients converged.
    pub converged: bool,
    /// Rooms with clients.
    pub rooms_with_clients: u64,
    /// Most clients in one room.
    pub largest_room: u64,
    /// Rooms whose clients all showed the truth.
    pub converged_rooms: u64,
    /// Rooms with clients that did not all show the truth within `--settle-timeout`.
    pub stale_rooms: u64,
    /// Clients of stale rooms that did not show their room's truth.
    pub stale_clients: u64,
    /// Of those, clients that never got a `room users` for their room.
    pub stale_clients_without_value: u64,
    /// Rooms whose true count was not what was there before plus the swarm's clients.
    pub count_mismatches: u64,
    /// The first few of them.
    pub count_mismatch_examples: Vec<CountMismatch>,
    /// Rooms whose count the URLs did not agree on (or did not give).
    pub truth_disagreements: u64,
    /// With `--users`: rooms whose true users were not what was there before plus the swarm's
    /// distinct users in it.
    pub user_count_mismatches: u64,
    /// The first few of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_count_mismatch_examples: Vec<CountMismatch>,
    /// Convergence times of the converged rooms, microseconds.
    #[serde(skip)]
    pub convergence: Histogram,
    /// The converged rooms that took longest, slowest first.
    pub slowest_rooms: Vec<SlowRoom>,
    /// The true count of every room the swarm touched, by name, as last read.
    pub truths: BTreeMap<String, i64>,
    /// With `--users`: the true users of every room the swarm touched, as last read.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_truths: BTreeMap<String, i64>,
}

/// A room whose true count is not what was there before plus the swarm's clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountMismatch {
    /// The room.
    pub room: String,
    /// What was there before plus the swarm's clients in it.
    pub expected: i64,
    /// What the API said.
    pub seen: i64,
}

/// How far apart the listings are that must agree before the run takes its room baseline.
const BASELINE_GAP: std::time::Duration = std::time::Duration::from_millis(200);
/// Listings compared at most.
const BASELINE_LOOKS: usize = 10;

/// A converged room and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowRoom {
    /// The room.
    pub room: String,
    /// Its clients.
    pub clients: u64,
    /// From its last change to the moment its last client showed the truth, milliseconds.
    pub convergence_ms: f64,
}

/// Slowest rooms kept by name in the report.
const SLOWEST_KEPT: usize = 10;

/// Mismatches kept by name in the report.
const MISMATCHES_KEPT: usize = 20;

/// Reads and judges the rooms of a run.
#[derive(Debug)]
pub struct RoomCheck {
    /// The rooms.
    pub plan: RoomPlan,
    api: RoomApi,
    baseline: BTreeMap<u32, i64>,
    /// With `--users`: each room's users before the run; `None` without `--users`.
    baseline_users: Option<BTreeMap<u32, i64>>,
}

impl RoomCheck {
    /// A check of `plan`'s rooms, taking their counts before the run (first URL) as the
    /// baseline: once two listings [`BASELINE_GAP`] apart agree (the API reads what the nodes
    /// wrote, which may trail a previous run's last disconnects by a flush), or the last one.
    pub async fn new(plan: RoomPlan, api: RoomApi, users: bool) -> anyhow::Result<Self> {
        let mut listed = api.list_both(0, &plan.prefix).await?;
        for _ in 0..BASELINE_LOOKS {
            tokio::time::sleep(BASELINE_GAP).await;
            let again = api.list_both(0, &plan.prefix).await?;
            if again == listed {
                break;
            }
            listed = again;
        }
        let of = |pick: fn(&(i64, i64)) -> i64| -> BTreeMap<u32, i64> {
            listed.iter().filter_map(|(name, counts)| Some((plan.index_of(name)?, pick(counts)))).collect()
        };
        let baseline = of(|counts| counts.0);
        let baseline_users = users.then(|| of(|counts| counts.1));
        Ok(Self { plan, api, baseline, baseline_users })
    }

    /// Asks every worker what its rooms' clients show, and the API what the truth is.
    pub async fn look(&self, fleet: &mut Fleet) -> anyhow::Result<(RoomLook, RoomVerdict)> {
        fleet.broadcast(&Command::RoomStatus).await?;
        let answers = fleet
            .gather(|event| match event {
                Event::RoomStatus { rooms } => Some(rooms),
                _ => None,
            })
            .await?;
        let summaries = merge(answers);
        let names: Vec<String> = summaries.keys().map(|&room| self.plan.name(room)).collect();
        let counts = self.api.both_counts(&names).await;
        let truths = summaries.keys().copied().zip(counts.iter().map(|c| c.map(|c| c.0))).collect();
        let user_truths = match self.baseline_users {
            Some(_) => summaries.keys().copied().zip(counts.iter().map(|c| c.map(|c| c.1))).collect(),
            None => BTreeMap::new(),
        };
        let look = RoomLook { summaries, truths, user_truths };
        let mut verdict = judge(&look, &self.baseline);
        if let Some(baseline_users) = &self.baseline_users {
            judge_users(&look, baseline_users, &mut verdict);
        }
        Ok((look, verdict))
    }

    /// The converged rooms that took longest, slowest first.
    fn slowest(&self, look: &RoomLook, verdict: &RoomVerdict) -> Vec<SlowRoom> {
        let mut slowest = verdict.converged.clone();
        slowest.sort_by_key(|&(room, took)| (std::cmp::Reverse(took), room));
        slowest
            .iter()
            .take(SLOWEST_KEPT)
            .map(|&(room, took)| SlowRoom {
                room: self.plan.name(room),
                clients: look.summaries.get(&room).map_or(0, |summary| summary.clients),
                convergence_ms: took as f64 / 1000.0,
            })
            .collect()
    }

    /// The clients of the stale rooms that do not show their truth, and those without a value.
    async fn count_stale(
        &self,
        fleet: &mut Fleet,
        look: &RoomLook,
        verdict: &RoomVerdict,
    ) -> anyhow::Result<(u64, u64)> {
        if verdict.stale.is_empty() {
            return Ok((0, 0));
        }
        // A room without an agreed truth: every client of it is stale (i64::MIN matches nobody).
        let truth_of = |truths: &BTreeMap<u32, Option<i64>>, room: u32| {
            (room, truths.get(&room).copied().flatten().unwrap_or(i64::MIN))
        };
        let truths = verdict.stale.iter().map(|&room| truth_of(&look.truths, room)).collect();
        let user_truths = match self.baseline_users {
            Some(_) => verdict.stale.iter().map(|&room| truth_of(&look.user_truths, room)).collect(),
            None => Vec::new(),
        };
        fleet.broadcast(&Command::RoomStale { truths, user_truths }).await?;
        let answers = fleet
            .gather(|event| match event {
                Event::RoomStale { stale, without_value } => Some((stale, without_value)),
                _ => None,
            })
            .await?;
        Ok((answers.iter().map(|answer| answer.0).sum(), answers.iter().map(|answer| answer.1).sum()))
    }

    /// The settle result of the last look; counts the stale rooms' stale clients.
    pub async fn finish(
        &self,
        fleet: &mut Fleet,
        look: &RoomLook,
        verdict: &RoomVerdict,
    ) -> anyhow::Result<RoomSettle> {
        let mut convergence = Histogram::default();
        for &(_, took) in &verdict.converged {
            convergence.record(took);
        }
        let (stale_clients, stale_clients_without_value) = self.count_stale(fleet, look, verdict).await?;
        let named = |truths: &BTreeMap<u32, Option<i64>>| -> BTreeMap<String, i64> {
            truths.iter().filter_map(|(&room, truth)| Some((self.plan.name(room), (*truth)?))).collect()
        };
        let mismatches = |mismatched: &[(u32, i64, i64)]| -> Vec<CountMismatch> {
            mismatched
                .iter()
                .take(MISMATCHES_KEPT)
                .map(|&(room, expected, seen)| CountMismatch { room: self.plan.name(room), expected, seen })
                .collect()
        };
        Ok(RoomSettle {
            converged: verdict.all_converged(),
            rooms_with_clients: verdict.with_clients,
            largest_room: verdict.largest,
            converged_rooms: verdict.converged.len() as u64,
            stale_rooms: verdict.stale.len() as u64,
            stale_clients,
            stale_clients_without_value,
            count_mismatches: verdict.mismatched.len() as u64,
            count_mismatch_examples: mismatches(&verdict.mismatched),
            truth_disagreements: verdict.disagreed,
            user_count_mismatches: verdict.user_mismatched.len() as u64,
            user_count_mismatch_examples: mismatches(&verdict.user_mismatched),
            convergence,
            slowest_rooms: self.slowest(look, verdict),
            truths: named(&look.truths),
            user_truths: named(&look.user_truths),
        })
    }
}

#[cfg(test)]
#[path = "room_check_tests.rs"]
mod tests;
