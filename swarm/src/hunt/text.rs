//! The hunt report as text: one screen for a person at a terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::ops::Op;
use super::report::{Drift, HuntReport, Shortest};
use super::round::KindCount;
use crate::report::EXIT_OK;

/// The text report.
pub fn text(report: &HuntReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rollcall swarm: hunt on {} node(s), seed {}, {} sequences in {} rounds, {:.1} s, {}",
        report.urls.len(),
        report.seed,
        report.sequences,
        report.rounds,
        report.duration_s,
        report.ending,
    );
    if let Some(failure) = &report.failure {
        let _ = writeln!(out, "  failure         {failure}");
    }
    let _ = writeln!(out, "  burners         {}", report.burners);
    let dropped: u64 = report.held_dropped.values().sum();
    let _ = writeln!(
        out,
        "  held clients    {} target, {} at the end, {dropped} closed by a node",
        report.held_target, report.held_at_end
    );
    let _ = writeln!(out, "  sequences       {}", kinds(&report.per_kind));
    let _ = writeln!(out, "  drifts          {}", drifts(report));
    if let Some(suspects) = suspects(&report.per_kind) {
        let _ = writeln!(out, "  suspects        {suspects}");
    }
    for drift in &report.drift_rounds {
        let _ = writeln!(out, "    {}", drift_line(drift));
    }
    if let Some(shortest) = &report.shortest {
        let _ = writeln!(out, "  shortest        {}", shortest_line(shortest));
        let _ = writeln!(out, "    replay: {}", shortest.replay);
    }
    let errors: Vec<String> = report.errors.iter().map(|(kind, count)| format!("{kind}={count}")).collect();
    let errors = if errors.is_empty() { "none".to_owned() } else { errors.join(", ") };
    let _ = writeln!(out, "  errors          {errors}");
    let verdict = if report.exit_code == EXIT_OK { "OK" } else { "FAILED" };
    let _ = writeln!(out, "  result          {verdict} (exit code {})", report.exit_code);
    out
}

fn kinds(per_kind: &BTreeMap<String, KindCount>) -> String {
    let mut parts = Vec::new();
    for op in Op::all() {
        if let Some(count) = per_kind.get(op.name()) {
            let mut part = format!("{op} {}", count.run);
            if count.failed > 0 || count.skipped > 0 {
                let _ = write!(part, " ({} failed, {} skipped)", count.failed, count.skipped);
            }
            parts.push(part);
        }
    }
    if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
}

/// The kinds whose rounds drifted, most often first (drifted rounds per round with the kind).
fn suspects(per_kind: &BTreeMap<String, KindCount>) -> Option<String> {
    let mut suspects: Vec<(f64, &str, &KindCount)> = per_kind
        .iter()
        .filter(|(_, count)| count.drift_rounds > 0)
        .map(|(name, count)| (count.drift_rounds as f64 / count.rounds.max(1) as f64, name.as_str(), count))
        .collect();
    suspects.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let parts: Vec<String> = suspects
        .iter()
        .map(|(share, name, count)| {
            format!("{name} ({} of {} rounds, {:.1}%)", count.drift_rounds, count.rounds, share * 100.0)
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn drifts(report: &HuntReport) -> String {
    match (report.first_drift_after_sequences, report.first_drift_after_s) {
        (Some(sequences), Some(seconds)) => {
            format!("{} (the first after {sequences} sequences, {seconds:.1} s)", report.drifts)
        }
        _ => report.drifts.to_string(),
    }
}

fn drift_line(drift: &Drift) -> String {
    let round = drift.round.map_or_else(|| "warm-up".to_owned(), |round| format!("round {round}"));
    let nodes: Vec<String> = drift
        .nodes
        .iter()
        .map(|node| {
            let seen = |value: Option<i64>| value.map_or_else(|| "?".to_owned(), |value| value.to_string());
            format!(
                "node {}: users {} expected {} seen, local {} expected {} seen",
                node.node,
                node.expected_users,
                seen(node.seen_users),
                node.expected_local,
                seen(node.seen_local)
            )
        })
        .collect();
    let ops: Vec<String> = drift.ops.iter().map(|(op, count)| format!("{op}×{count}")).collect();
    let rooms: Vec<String> = drift
        .rooms
        .iter()
        .map(|room| {
            let seen = room.seen.map_or_else(|| "?".to_owned(), |seen| seen.to_string());
            format!("{} on node {} {} expected {seen} seen", room.room, room.node, room.expected)
        })
        .collect();
    let rooms = if rooms.is_empty() { String::new() } else { format!("; rooms: {}", rooms.join(", ")) };
    format!(
        "{round} after {} sequences: {}{rooms}; {} stale clients of {} ({} stale in their room); ran {}",
        drift.after_sequences,
        nodes.join("; "),
        drift.stale_clients,
        drift.held,
        drift.stale_room_clients,
        ops.join(" ")
    )
}

fn shortest_line(shortest: &Shortest) -> String {
    let ran: Vec<String> = shortest.ran.iter().map(|(op, count)| format!("{op}×{count}")).collect();
    format!(
        "{} step(s) on node(s) {:?}: {}; seed {} round {} ({} of {} shrink trials drifted)",
        shortest.steps.len(),
        shortest.nodes,
        ran.join(" "),
        shortest.seed,
        shortest.round,
        shortest.shrink_reproduced,
        shortest.shrink_trials,
    )
}
