//! The hunt's report: what ran, every drift found, the shortest failing round, printed as text
//! or as one JSON object (stable field names), and its exit code.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::expect::{NodeVerdict, RoomVerdict, Verdict};
use super::plan::{self, Step};
use super::round::{KindCount, Tally};
use super::shrink::{Failing, Shrunk};
use crate::report::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TIMED_OUT, Ending};

/// Drifts kept in full in the report (all are counted).
const DRIFTS_KEPT: usize = 50;
/// Wrong rooms kept per drift.
const ROOMS_KEPT: usize = 20;

/// One round after which the nodes did not settle on the truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// Hunt round (`None`: the warm-up that connects the held clients).
    pub round: Option<u64>,
    /// Sequences run when it was found (its round included).
    pub after_sequences: u64,
    /// Seconds into the hunt when it was found.
    pub after_s: f64,
    /// What the round ran, per operation.
    pub ops: BTreeMap<String, usize>,
    /// Expected and seen values of every node.
    pub nodes: Vec<NodeVerdict>,
    /// Held clients then.
    pub held: usize,
    /// Held clients that did not show their node's expected count.
    pub stale_clients: usize,
    /// Rooms whose count a node's API gave wrong: expected and seen.
    pub rooms: Vec<RoomVerdict>,
    /// Held clients that did not show their room's expected count.
    pub stale_room_clients: usize,
}

impl Drift {
    /// A drift seen after `steps` ran.
    pub fn new(round: Option<u64>, steps: &[Step], verdict: &Verdict, after: (u64, Duration)) -> Self {
        Drift {
            round,
            after_sequences: after.0,
            after_s: after.1.as_secs_f64(),
            ops: census(steps),
            nodes: verdict.nodes.clone(),
            held: verdict.held,
            stale_clients: verdict.stale_clients,
            rooms: verdict.rooms.iter().take(ROOMS_KEPT).cloned().collect(),
            stale_room_clients: verdict.stale_room_clients,
        }
    }
}

/// The smallest failing round found by shrinking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shortest {
    /// Operations its plan could draw from.
    pub ops: Vec<String>,
    /// Nodes its plan could use.
    pub nodes: Vec<usize>,
    /// Its size.
    pub round_size: usize,
    /// The seed it was planned from.
    pub seed: u64,
    /// Its round number under that seed.
    pub round: u64,
    /// What it ran, per operation.
    pub ran: BTreeMap<String, usize>,
    /// What it ran, `operation@node`, in plan order.
    pub steps: Vec<String>,
    /// Shrinking trial rounds run, and how many of them drifted.
    pub shrink_trials: u32,
    /// See `shrink_trials`.
    pub shrink_reproduced: u32,
    /// The command line that replays it.
    pub replay: String,
}

/// What the run was asked to do, as far as the report tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// Node URLs.
    pub urls: Vec<String>,
    /// The seed.
    pub seed: u64,
    /// `--held`.
    pub held: usize,
    /// `--burners`.
    pub burners: usize,
    /// The hunt's rooms are `<room_prefix><index>`.
    pub room_prefix: String,
}

/// What the hunt found; partial when it was cut short.
#[derive(Debug, Default)]
pub struct Findings {
    /// Node ids, in `--url` order.
    pub node_ids: Vec<String>,
    /// Rounds run (the warm-up not included).
    pub rounds: u64,
    /// Sequences by kind.
    pub tally: Tally,
    /// Every drift (all counted, the first few kept).
    pub drifts: Vec<Drift>,
    /// Drifts found.
    pub drift_count: u64,
    /// The failing round with the fewest kinds (the first of those), to shrink.
    pub narrowest_failing: Option<Failing>,
    /// Shrinking's result.
    pub shrunk: Option<Shrunk>,
    /// Held clients connected at the end.
    pub held_at_end: usize,
    /// Held clients a node closed, by reason.
    pub held_dropped: BTreeMap<String, u64>,
}

impl Findings {
    /// Keeps `failing` if it ran fewer kinds of sequence than the narrowest failing round so far.
    pub fn failing(&mut self, failing: Failing) {
        let kinds = |failing: &Failing| plan::census(&failing.steps).len();
        if self.narrowest_failing.as_ref().is_none_or(|narrowest| kinds(&failing) < kinds(narrowest)) {
            self.narrowest_failing = Some(failing);
        }
    }

    /// Records a drift.
    pub fn drift(&mut self, drift: Drift) {
        self.drift_count += 1;
        if self.drifts.len() < DRIFTS_KEPT {
            self.drifts.push(drift);
        }
    }
}

/// The report of one hunt; `--json` prints it as is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HuntReport {
    /// Always `hunt`.
    pub scenario: String,
    /// Node URLs.
    pub urls: Vec<String>,
    /// Node ids, in `--url` order.
    pub node_ids: Vec<String>,
    /// The seed (`--seed` replays the run).
    pub seed: u64,
    /// `completed`, `interrupted`, `timed_out` or `failed`.
    pub ending: String,
    /// Why the run failed, when it did.
    pub failure: Option<String>,
    /// Wall time, seconds.
    pub duration_s: f64,
    /// CPU burner processes that ran beside.
    pub burners: usize,
    /// The hunt's rooms are `<room_prefix><index>`.
    pub room_prefix: String,
    /// Rounds run.
    pub rounds: u64,
    /// Sequences started (the warm-up's joins and the shrink trials' included).
    pub sequences: u64,
    /// Sequences that failed on the way (see `errors`).
    pub sequences_failed: u64,
    /// Counts by operation.
    pub per_kind: BTreeMap<String, KindCount>,
    /// Failures by `operation: kind`.
    pub errors: BTreeMap<String, u64>,
    /// `--held`.
    pub held_target: usize,
    /// Held clients connected at the end.
    pub held_at_end: usize,
    /// Held clients a node closed (ping timeout, ...), by reason; counted out of the truth.
    pub held_dropped: BTreeMap<String, u64>,
    /// Rounds after which the nodes did not settle on the truth.
    pub drifts: u64,
    /// The first drifts in full.
    pub drift_rounds: Vec<Drift>,
    /// Sequences run when the first drift was found.
    pub first_drift_after_sequences: Option<u64>,
    /// Seconds into the hunt when the first drift was found.
    pub first_drift_after_s: Option<f64>,
    /// The smallest failing round found.
    pub shortest: Option<Shortest>,
    /// The process exit code this report leads to.
    pub exit_code: u8,
}

impl HuntReport {
    /// Builds the report.
    pub fn build(setup: &Setup, findings: Findings, ending: &Ending, elapsed: Duration) -> Self {
        let per_kind =
            findings.tally.per_kind.iter().map(|(op, count)| (op.name().to_owned(), *count)).collect();
        let shortest = findings.shrunk.as_ref().map(|shrunk| shortest(setup, shrunk));
        let first = findings.drifts.first();
        let mut report = HuntReport {
            scenario: "hunt".to_owned(),
            urls: setup.urls.clone(),
            node_ids: findings.node_ids,
            seed: setup.seed,
            ending: crate::report::ending_name(ending).to_owned(),
            failure: if let Ending::Failed(message) = ending { Some(message.clone()) } else { None },
            duration_s: elapsed.as_secs_f64(),
            burners: setup.burners,
            room_prefix: setup.room_prefix.clone(),
            rounds: findings.rounds,
            sequences: findings.tally.sequences(),
            sequences_failed: findings.tally.per_kind.values().map(|count| count.failed).sum(),
            per_kind,
            errors: findings.tally.errors.clone(),
            held_target: setup.held,
            held_at_end: findings.held_at_end,
            held_dropped: findings.held_dropped,
            drifts: findings.drift_count,
            first_drift_after_sequences: first.map(|drift| drift.after_sequences),
            first_drift_after_s: first.map(|drift| drift.after_s),
            drift_rounds: findings.drifts,
            shortest,
            exit_code: EXIT_OK,
        };
        report.exit_code = exit_code(&report, ending);
        report
    }
}

fn exit_code(report: &HuntReport, ending: &Ending) -> u8 {
    match ending {
        Ending::Interrupted => EXIT_INTERRUPTED,
        Ending::TimedOut => EXIT_TIMED_OUT,
        Ending::Failed(_) => EXIT_FAILED,
        Ending::Completed if report.drifts > 0 => EXIT_FAILED,
        Ending::Completed if report.sequences == report.sequences_failed => EXIT_FAILED,
        Ending::Completed => EXIT_OK,
    }
}

/// Operation name → count.
fn census(steps: &[Step]) -> BTreeMap<String, usize> {
    plan::census(steps).into_iter().map(|(op, count)| (op.name().to_owned(), count)).collect()
}

fn shortest(setup: &Setup, shrunk: &Shrunk) -> Shortest {
    let failing = &shrunk.smallest;
    let ops: Vec<String> = failing.filter.ops.iter().map(|op| op.name().to_owned()).collect();
    let nodes: Vec<String> = failing.filter.nodes.iter().map(usize::to_string).collect();
    let urls: String = setup.urls.iter().map(|url| format!(" --url {url}")).collect();
    let replay = format!(
        "rollcall swarm --scenario hunt{urls} --seed {} --ops {} --nodes {} --round-size {} --mix {} --rounds {} --held {}",
        failing.seed,
        ops.join(","),
        nodes.join(","),
        failing.filter.size,
        failing.filter.mix.name(),
        failing.round + 1,
        setup.held,
    );
    Shortest {
        ops,
        nodes: failing.filter.nodes.clone(),
        round_size: failing.filter.size,
        seed: failing.seed,
        round: failing.round,
        ran: census(&failing.steps),
        steps: failing.steps.iter().map(|step| format!("{}@{}", step.op, step.node)).collect(),
        shrink_trials: shrunk.trials,
        shrink_reproduced: shrunk.reproduced,
        replay,
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
