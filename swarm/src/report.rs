//! The merged report: built from the parent's measurements and the workers' counters,
//! printed as text or as one JSON object, and turned into the exit code.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::SwarmArgs;
use super::histogram::{Histogram, Percentiles};
use super::messages::{PhaseDone, WorkerReport};
use super::room_check::RoomSettle;
use super::room_report::RoomsReport;
use super::rooms::RoomPlan;
use super::soak::SoakReport;

/// Exit code when the run finished and every check passed.
pub const EXIT_OK: u8 = 0;
/// Exit code when stale > 0, a connect failed, a client was dropped, or the run failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code when `--max-duration` stopped the run.
pub const EXIT_TIMED_OUT: u8 = 124;
/// Exit code when Ctrl-C stopped the run.
pub const EXIT_INTERRUPTED: u8 = 130;

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every phase ran.
    Completed,
    /// Ctrl-C.
    Interrupted,
    /// `--max-duration` passed.
    TimedOut,
    /// A phase failed (a worker died, ...).
    Failed(String),
}

/// The result of waiting for convergence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Settle {
    /// Whether every connected client saw the agreed true total.
    pub converged: bool,
    /// Last change to the time the last client got the true total.
    pub convergence_ms: Option<f64>,
    /// Connected clients that did not see the true total within the settle timeout.
    pub stale: u64,
    /// Stale clients that never received any total.
    pub stale_without_value: u64,
    /// Clients connected at the time.
    pub connected: u64,
    /// The agreed true total (`None`: the nodes disagreed or did not answer).
    pub truth: Option<i64>,
}

/// What the parent measured so far; partial when the run was cut short.
#[derive(Debug, Clone, Default)]
pub struct RunState {
    /// Presence total before the swarm connected.
    pub baseline_users: Option<i64>,
    /// The initial connect phase.
    pub connect: Option<PhaseDone>,
    /// The churn phase.
    pub churn: Option<PhaseDone>,
    /// The last convergence measurement.
    pub settle: Option<Settle>,
    /// Presence total after the swarm disconnected.
    pub final_users: Option<i64>,
    /// The run's rooms, if it has any.
    pub room_plan: Option<RoomPlan>,
    /// The move phase.
    pub moves: Option<PhaseDone>,
    /// The last per-room convergence measurement.
    pub rooms: Option<RoomSettle>,
    /// With `--users`: the last cluster-wide unique-user measurement.
    pub users: Option<UsersSettle>,
    /// The soak's RSS samples and slopes.
    pub soak: Option<SoakReport>,
}

/// With `--users`: whether `/api/presence` `unique_users` reached what was there before plus the
/// swarm's distinct users, on every URL; in the report as is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsersSettle {
    /// The identities the clients share (`--users`).
    pub identities: u32,
    /// `unique_users` before the swarm connected (agreed by every URL).
    pub baseline: Option<i64>,
    /// Distinct users among the connected clients.
    pub swarm_users: u64,
    /// `baseline + swarm_users`.
    pub expected: Option<i64>,
    /// The last agreed `unique_users`.
    pub seen: Option<i64>,
    /// Whether every URL said `expected` within `--settle-timeout`.
    pub converged: bool,
    /// From the last change to the first look at which every URL said `expected`, milliseconds
    /// (to within one poll, 50 ms, plus the look).
    pub convergence_ms: Option<f64>,
}

/// Mean and largest number of messages per client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PerClient {
    /// Mean over clients that connected.
    pub mean: f64,
    /// Largest.
    pub max: u64,
}

/// The report of one swarm run; `--json` prints it as is (stable field names).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `burst`, `hold`, `churn` or `move`.
    pub scenario: String,
    /// Node or load balancer URLs.
    pub urls: Vec<String>,
    /// Worker processes.
    pub workers: usize,
    /// Clients asked for.
    pub clients: u64,
    /// `completed`, `interrupted`, `timed_out` or `failed`.
    pub ending: String,
    /// Why the run failed, when it did.
    pub failure: Option<String>,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
    /// Connects started (initial and churn).
    pub connects_attempted: u64,
    /// Connects that got the Socket.IO connect ack.
    pub connects_ok: u64,
    /// Connects that failed.
    pub connect_errors: u64,
    /// Connected clients closed by the server or the network.
    pub dropped: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Achieved rate of the initial connect phase (first start to last success), per second.
    pub connect_rate: f64,
    /// Connect latency percentiles, milliseconds.
    pub connect_latency_ms: Percentiles,
    /// Most clients connected at once (sum of the workers' peaks).
    pub peak_connected: u64,
    /// Whether every connected client saw the true total (after the last change).
    pub converged: bool,
    /// Last change to the moment every connected client saw the true total, milliseconds.
    pub convergence_ms: Option<f64>,
    /// Connected clients that never saw the true total within `--settle-timeout`.
    pub stale: u64,
    /// Stale clients that never received any `refresh users` at all.
    pub stale_without_value: u64,
    /// The true total the clients were compared with.
    pub true_users: Option<i64>,
    /// Presence total before the swarm connected.
    pub baseline_users: Option<i64>,
    /// Presence total after the swarm disconnected.
    pub final_users: Option<i64>,
    /// Churn reconnects done.
    pub churn_reconnects: u64,
    /// `refresh users` messages per client.
    pub refresh_messages_per_client: PerClient,
    /// Per-room convergence, `room users` traffic and moves (`null` without `--rooms`).
    pub rooms: Option<RoomsReport>,
    /// Cluster-wide unique users (`null` without `--users`).
    pub users: Option<UsersSettle>,
    /// Soak: RSS samples and slopes (`null` for other scenarios).
    pub soak: Option<SoakReport>,
    /// The process exit code this report leads to.
    pub exit_code: u8,
}

impl Report {
    /// Merges the parent's measurements and the workers' counters.
    pub fn build(
        args: &SwarmArgs,
        workers: usize,
        state: RunState,
        reports: &[WorkerReport],
        ending: Ending,
        elapsed: Duration,
    ) -> Report {
        let merged = merge_reports(reports);
        let connect = connect_phase(&state, &merged);
        let settle = state.settle.unwrap_or_default();
        let rooms =
            state.room_plan.as_ref().map(|plan| RoomsReport::build(plan, state.rooms.clone(), &merged));
        let mut report = Report {
            scenario: args.scenario.name().to_owned(),
            urls: args.urls.clone(),
            workers,
            clients: args.clients,
            ending: ending_name(&ending).to_owned(),
            failure: if let Ending::Failed(message) = &ending { Some(message.clone()) } else { None },
            duration_s: elapsed.as_secs_f64(),
            connects_attempted: merged.attempted,
            connects_ok: merged.ok,
            connect_errors: merged.failed,
            dropped: merged.dropped,
            errors: merged.errors.clone(),
            connect_rate: rate(&connect),
            connect_latency_ms: merged.latency.percentiles_ms(),
            peak_connected: merged.peak_connected,
            converged: settle.converged,
            convergence_ms: settle.convergence_ms,
            stale: settle.stale,
            stale_without_value: settle.stale_without_value,
            true_users: settle.truth,
            baseline_users: state.baseline_users,
            final_users: state.final_users,
            churn_reconnects: state.churn.map(|churn| churn.ok + churn.failed).unwrap_or(0),
            refresh_messages_per_client: PerClient::of(&merged),
            rooms,
            users: state.users.clone(),
            soak: state.soak,
            exit_code: EXIT_OK,
        };
        report.exit_code = exit_code(&report, &ending);
        report
    }
}

/// The connect phase; for a run cut short during it, the rate over what did connect.
fn connect_phase(state: &RunState, merged: &WorkerReport) -> PhaseDone {
    state.connect.unwrap_or(PhaseDone {
        ok: merged.ok,
        first_start_us: merged.first_start_us,
        last_ok_us: merged.last_ok_us,
        ..PhaseDone::default()
    })
}

impl PerClient {
    /// Mean over the clients that connected, and the largest count.
    fn of(merged: &WorkerReport) -> Self {
        PerClient { mean: merged.messages_total as f64 / merged.ok.max(1) as f64, max: merged.messages_max }
    }
}

pub(crate) fn ending_name(ending: &Ending) -> &'static str {
    match ending {
        Ending::Completed => "completed",
        Ending::Interrupted => "interrupted",
        Ending::TimedOut => "timed_out",
        Ending::Failed(_) => "failed",
    }
}

fn exit_code(report: &Report, ending: &Ending) -> u8 {
    match ending {
        Ending::Interrupted => EXIT_INTERRUPTED,
        Ending::TimedOut => EXIT_TIMED_OUT,
        Ending::Failed(_) => EXIT_FAILED,
        Ending::Completed if report.stale > 0 || !report.converged => EXIT_FAILED,
        Ending::Completed if report.connect_errors > 0 || report.dropped > 0 => EXIT_FAILED,
        Ending::Completed if report.rooms.as_ref().is_some_and(RoomsReport::failed) => EXIT_FAILED,
        Ending::Completed if report.users.as_ref().is_some_and(|users| !users.converged) => EXIT_FAILED,
        Ending::Completed => EXIT_OK,
    }
}

/// Connects per second over the connect phase (first start to last success).
fn rate(phase: &PhaseDone) -> f64 {
    let span_us = phase.last_ok_us.saturating_sub(phase.first_start_us);
    if phase.ok == 0 || span_us == 0 {
        return 0.0;
    }
    phase.ok as f64 / (span_us as f64 / 1e6)
}

/// Adds up the workers' counters.
pub fn merge_reports(reports: &[WorkerReport]) -> WorkerReport {
    let mut merged = WorkerReport { latency: Histogram::default(), ..WorkerReport::default() };
    for report in reports {
        merged.latency.merge(&report.latency);
        merged.attempted += report.attempted;
        merged.ok += report.ok;
        merged.failed += report.failed;
        merged.dropped += report.dropped;
        merged.peak_connected += report.peak_connected;
        merged.messages_total += report.messages_total;
        merged.room_messages_total += report.room_messages_total;
        merged.room_messages_max = merged.room_messages_max.max(report.room_messages_max);
        merged.moves_attempted += report.moves_attempted;
        merged.moves_ok += report.moves_ok;
        merged.moves_failed += report.moves_failed;
        merged.move_latency.merge(&report.move_latency);
        if merged.first_start_us == 0
            || (report.first_start_us > 0 && report.first_start_us < merged.first_start_us)
        {
            merged.first_start_us = report.first_start_us;
        }
        merged.last_ok_us = merged.last_ok_us.max(report.last_ok_us);
        merged.messages_max = merged.messages_max.max(report.messages_max);
        for (kind, count) in &report.errors {
            *merged.errors.entry(kind.clone()).or_insert(0) += count;
        }
    }
    merged
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
