//! Prints a [`Report`]: one JSON object, or a short text summary.

use std::fmt::Write as _;
use std::io::Write as _;

use super::report::Report;
use super::room_report::RoomsReport;

/// Prints the report on stdout.
pub fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    let text = if json { format!("{}\n", serde_json::to_string(report)?) } else { text(report) };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// The text summary.
pub fn text(report: &Report) -> String {
    let mut out = header(report);
    let latency = report.connect_latency_ms;
    let _ = writeln!(out, "  connect rate    {:.1}/s", report.connect_rate);
    let _ = writeln!(
        out,
        "  connect latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latency.p50, latency.p90, latency.p99, latency.max,
    );
    let _ = writeln!(out, "  convergence     {}", convergence(report));
    let refresh = report.refresh_messages_per_client;
    let _ =
        writeln!(out, "  refresh users   {:.1} mean, {} max messages per client", refresh.mean, refresh.max);
    if report.churn_reconnects > 0 {
        let _ = writeln!(out, "  churn           {} reconnects", report.churn_reconnects);
    }
    if let Some(rooms) = &report.rooms {
        out.push_str(&rooms_text(rooms));
    }
    if let Some(users) = &report.users {
        let took = users.convergence_ms.map_or("-".to_owned(), |ms| format!("{ms:.1} ms"));
        let _ = writeln!(
            out,
            "  unique users    {} seen, {} expected ({} before + {} of {} identities): {}, {took}",
            show(users.seen),
            show(users.expected),
            show(users.baseline),
            users.swarm_users,
            users.identities,
            if users.converged { "converged" } else { "NOT converged" },
        );
    }
    if let Some(soak) = &report.soak {
        out.push_str(&soak_text(soak));
    }
    let (before, after) = (show(report.baseline_users), show(report.final_users));
    let _ = writeln!(out, "  presence        {before} before, {after} after");
    let _ = writeln!(out, "  errors          {}", errors(report));
    let verdict = if report.exit_code == 0 { "OK" } else { "FAILED" };
    let _ = writeln!(out, "  result          {verdict} (exit code {})", report.exit_code);
    out
}

/// One line per watched process: its RSS after the warm-up and the slope.
fn soak_text(soak: &crate::soak::SoakReport) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "  soak            {} RSS samples, warm-up {:.0} s", soak.samples.len(), soak.warmup_s);
    for (index, pid) in soak.pids.iter().enumerate() {
        let slope = soak.slope_kib_per_min[index].map_or("n/a".to_owned(), |s| format!("{s:+.1} KiB/min"));
        let ends = soak.after_warmup_kib[index]
            .map_or("n/a".to_owned(), |(first, last)| format!("{first} -> {last} KiB"));
        let _ = writeln!(out, "  rss pid {pid:<7} {ends} after warm-up, slope {slope}");
    }
    out
}

/// The title, failure and connect count lines.
fn header(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rollcall swarm: {} of {} clients on {} URL(s), {} worker(s), {:.1} s, {}",
        report.scenario,
        report.clients,
        report.urls.len(),
        report.workers,
        report.duration_s,
        report.ending,
    );
    if let Some(failure) = &report.failure {
        let _ = writeln!(out, "  failure         {failure}");
    }
    let _ = writeln!(
        out,
        "  connects        {} ok, {} failed, {} attempted, peak {} connected, {} dropped",
        report.connects_ok,
        report.connect_errors,
        report.connects_attempted,
        report.peak_connected,
        report.dropped,
    );
    out
}

fn convergence(report: &Report) -> String {
    let truth = show(report.true_users);
    match report.convergence_ms {
        Some(ms) => format!("{ms:.1} ms (stale {}, true total {truth})", report.stale),
        None => format!(
            "not reached (stale {}, {} of them never got a total; true total {truth})",
            report.stale, report.stale_without_value
        ),
    }
}

/// The rooms lines.
fn rooms_text(rooms: &RoomsReport) -> String {
    let mut out = String::new();
    let shape = match rooms.distribution.as_str() {
        "zipf" => format!("zipf s={}", rooms.zipf_s),
        other => other.to_owned(),
    };
    let _ = writeln!(
        out,
        "  rooms           {} {shape} ({}0..), {} with clients, largest {}",
        rooms.count, rooms.prefix, rooms.rooms_with_clients, rooms.largest_room
    );
    let latency = rooms.convergence_ms;
    let _ = writeln!(
        out,
        "  room convergence p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} rooms converged, {} stale, {} stale clients, {} of them without a value)",
        latency.p50,
        latency.p99,
        latency.max,
        rooms.converged_rooms,
        rooms.stale_rooms,
        rooms.stale_clients,
        rooms.stale_clients_without_value,
    );
    if rooms.count_mismatches > 0 || rooms.truth_disagreements > 0 {
        let _ = writeln!(
            out,
            "  room counts     {} not the swarm's clients plus what was there before, {} without an agreed count",
            rooms.count_mismatches, rooms.truth_disagreements
        );
    }
    let messages = rooms.room_messages_per_client;
    let _ = writeln!(
        out,
        "  room users      {:.1} mean, {} max messages per client",
        messages.mean, messages.max
    );
    let moves = rooms.moves;
    if moves.attempted > 0 {
        let _ = writeln!(
            out,
            "  moves           {} ok, {} failed of {}; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            moves.ok,
            moves.failed,
            moves.attempted,
            moves.latency_ms.p50,
            moves.latency_ms.p99,
            moves.latency_ms.max
        );
    }
    out
}

fn errors(report: &Report) -> String {
    if report.errors.is_empty() {
        return "none".to_owned();
    }
    let kinds: Vec<String> = report.errors.iter().map(|(kind, count)| format!("{kind}={count}")).collect();
    kinds.join(", ")
}

fn show(total: Option<i64>) -> String {
    total.map_or_else(|| "unknown".to_owned(), |total| total.to_string())
}
