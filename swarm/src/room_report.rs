//! The rooms part of the report (`rooms` in `--json`, stable field names): per-room
//! convergence, stale rooms and clients, `room users` traffic and the moves.

use std::collections::BTreeMap;

use serde::Serialize;

use super::histogram::Percentiles;
use super::messages::WorkerReport;
use super::report::PerClient;
use super::room_check::{CountMismatch, RoomSettle, SlowRoom};
use super::rooms::RoomPlan;

/// Room moves over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MovesReport {
    /// Moves started.
    pub attempted: u64,
    /// Moves whose `leave` and `join` were both acknowledged.
    pub ok: u64,
    /// Moves refused or cut short (kinds in the report's `errors`, `move_*`).
    pub failed: u64,
    /// First packet to last ack, milliseconds.
    pub latency_ms: Percentiles,
}

/// What the rooms saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomsReport {
    /// `--rooms`.
    pub count: u32,
    /// `uniform` or `zipf`.
    pub distribution: String,
    /// The Zipf exponent.
    pub zipf_s: f64,
    /// Room names are `<prefix><k>`.
    pub prefix: String,
    /// The seed of the room choices (`--seed` replays them).
    pub seed: u64,
    /// Whether every room with clients converged (false when the run ended before a check).
    pub converged: bool,
    /// Rooms with clients at the last check.
    pub rooms_with_clients: u64,
    /// Most clients in one room.
    pub largest_room: u64,
    /// Rooms whose clients all showed the room's true count.
    pub converged_rooms: u64,
    /// Rooms with clients that did not all show the true count within `--settle-timeout`.
    pub stale_rooms: u64,
    /// Clients of stale rooms that did not show the true count.
    pub stale_clients: u64,
    /// Of those, clients that never got a `room users` for their room.
    pub stale_clients_without_value: u64,
    /// Rooms whose true count was not what was there before plus the swarm's clients.
    pub count_mismatches: u64,
    /// The first few of them: room, expected, seen.
    pub count_mismatch_examples: Vec<CountMismatch>,
    /// Rooms whose count the URLs did not agree on (or did not give).
    pub truth_disagreements: u64,
    /// With `--users`: rooms whose true users were not what was there before plus the swarm's
    /// distinct users in it (a room converges only when its clients show both numbers).
    pub user_count_mismatches: u64,
    /// The first few of them: room, expected, seen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_count_mismatch_examples: Vec<CountMismatch>,
    /// Per room, from its last change to the moment all its clients showed the truth.
    pub convergence_ms: Percentiles,
    /// The converged rooms that took longest (up to 10), slowest first.
    pub slowest_rooms: Vec<SlowRoom>,
    /// `room users` messages per client.
    pub room_messages_per_client: PerClient,
    /// Room moves (`--scenario move`).
    pub moves: MovesReport,
    /// The true count of every room the swarm touched, by name, as last read from the API.
    pub truths: BTreeMap<String, i64>,
    /// With `--users`: the true users of those rooms.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_truths: BTreeMap<String, i64>,
}

impl RoomsReport {
    /// The rooms part of a run with `plan`.
    pub fn build(plan: &RoomPlan, settle: Option<RoomSettle>, merged: &WorkerReport) -> Self {
        let settle = settle.unwrap_or_default();
        RoomsReport {
            count: plan.count,
            distribution: plan.distribution.name().to_owned(),
            zipf_s: plan.zipf_s,
            prefix: plan.prefix.clone(),
            seed: plan.seed,
            converged: settle.converged,
            rooms_with_clients: settle.rooms_with_clients,
            largest_room: settle.largest_room,
            converged_rooms: settle.converged_rooms,
            stale_rooms: settle.stale_rooms,
            stale_clients: settle.stale_clients,
            stale_clients_without_value: settle.stale_clients_without_value,
            count_mismatches: settle.count_mismatches,
            count_mismatch_examples: settle.count_mismatch_examples,
            truth_disagreements: settle.truth_disagreements,
            user_count_mismatches: settle.user_count_mismatches,
            user_count_mismatch_examples: settle.user_count_mismatch_examples,
            convergence_ms: settle.convergence.percentiles_ms(),
            slowest_rooms: settle.slowest_rooms,
            room_messages_per_client: PerClient {
                mean: merged.room_messages_total as f64 / merged.ok.max(1) as f64,
                max: merged.room_messages_max,
            },
            moves: MovesReport {
                attempted: merged.moves_attempted,
                ok: merged.moves_ok,
                failed: merged.moves_failed,
                latency_ms: merged.move_latency.percentiles_ms(),
            },
            truths: settle.truths,
            user_truths: settle.user_truths,
        }
    }

    /// Whether the rooms fail the run: a room did not converge, a count was off, a move failed.
    pub fn failed(&self) -> bool {
        !self.converged
            || self.stale_rooms > 0
            || self.count_mismatches > 0
            || self.user_count_mismatches > 0
            || self.moves.failed > 0
    }
}
