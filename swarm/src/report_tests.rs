//! The merged report: fields, exit codes and text.

use clap::Parser;

use super::*;
use crate::room_check::RoomSettle;
use crate::rooms::{Distribution, RoomPlan};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SwarmArgs,
}

fn args() -> SwarmArgs {
    Cli::parse_from(["swarm", "--url", "http://127.0.0.1:3000", "--clients", "2"]).args
}

fn worker(ok: u64, messages: u64) -> WorkerReport {
    let mut report = WorkerReport { attempted: ok, ok, messages_total: messages, ..Default::default() };
    report.messages_max = messages;
    report.latency.record(2_000);
    report
}

fn state(stale: u64) -> RunState {
    let connect = PhaseDone { ok: 2, first_start_us: 1_000_000, last_ok_us: 2_000_000, ..Default::default() };
    let settle = Settle { converged: stale == 0, stale, truth: Some(2), ..Default::default() };
    RunState { connect: Some(connect), settle: Some(settle), ..Default::default() }
}

#[test]
fn clean_run_exits_zero() {
    let reports = [worker(1, 3), worker(1, 1)];
    let report = Report::build(&args(), 2, state(0), &reports, Ending::Completed, Duration::ZERO);
    assert_eq!(report.exit_code, EXIT_OK);
    assert_eq!(report.connects_ok, 2);
    assert_eq!(report.connect_rate, 2.0);
    assert_eq!(report.refresh_messages_per_client, PerClient { mean: 2.0, max: 3 });
    let json = serde_json::to_value(&report).expect("serializes");
    for field in ["connect_latency_ms", "convergence_ms", "stale", "errors", "exit_code"] {
        assert!(json.get(field).is_some(), "{field} missing");
    }
}

#[test]
fn stale_errors_and_interrupts_fail() {
    let reports = [worker(2, 2)];
    let stale = Report::build(&args(), 1, state(1), &reports, Ending::Completed, Duration::ZERO);
    assert_eq!(stale.exit_code, EXIT_FAILED);
    let mut failing = worker(1, 1);
    failing.failed = 1;
    failing.errors.insert("tcp_refused".to_owned(), 1);
    let errors = Report::build(&args(), 1, state(0), &[failing], Ending::Completed, Duration::ZERO);
    assert_eq!(errors.exit_code, EXIT_FAILED);
    let cut = Report::build(&args(), 1, RunState::default(), &reports, Ending::Interrupted, Duration::ZERO);
    assert_eq!(cut.exit_code, EXIT_INTERRUPTED);
    let text = super::super::render::text(&cut);
    assert!(text.contains("interrupted") && text.contains("not reached"), "{text}");
    let late = Report::build(&args(), 1, RunState::default(), &[], Ending::TimedOut, Duration::ZERO);
    assert_eq!(late.exit_code, EXIT_TIMED_OUT);
}

fn room_plan() -> RoomPlan {
    RoomPlan { count: 30, distribution: Distribution::Zipf, zipf_s: 1.0, prefix: "room-".to_owned(), seed: 9 }
}

fn rooms_state(stale_rooms: u64) -> RunState {
    let mut convergence = Histogram::default();
    for micros in [2_000, 4_000, 90_000] {
        convergence.record(micros);
    }
    let settle = RoomSettle {
        converged: stale_rooms == 0,
        rooms_with_clients: 3,
        largest_room: 2,
        converged_rooms: 3 - stale_rooms,
        stale_rooms,
        stale_clients: stale_rooms,
        convergence,
        truths: [("room-0".to_owned(), 2), ("room-1".to_owned(), 1)].into_iter().collect(),
        ..RoomSettle::default()
    };
    RunState { room_plan: Some(room_plan()), rooms: Some(settle), ..state(0) }
}

#[test]
fn the_rooms_part_has_stable_fields() {
    let mut reported = worker(2, 2);
    (reported.room_messages_total, reported.room_messages_max) = (6, 4);
    (reported.moves_attempted, reported.moves_ok) = (5, 5);
    reported.move_latency.record(1_500);
    let report = Report::build(&args(), 1, rooms_state(0), &[reported], Ending::Completed, Duration::ZERO);
    assert_eq!(report.exit_code, EXIT_OK);
    let json = serde_json::to_value(&report).expect("serializes");
    let rooms = &json["rooms"];
    for field in [
        "count",
        "distribution",
        "zipf_s",
        "prefix",
        "seed",
        "converged",
        "rooms_with_clients",
        "largest_room",
        "converged_rooms",
        "stale_rooms",
        "stale_clients",
        "stale_clients_without_value",
        "count_mismatches",
        "count_mismatch_examples",
        "truth_disagreements",
        "convergence_ms",
        "slowest_rooms",
        "room_messages_per_client",
        "moves",
        "truths",
    ] {
        assert!(rooms.get(field).is_some(), "rooms.{field} missing: {rooms}");
    }
    assert_eq!(rooms["distribution"], "zipf");
    assert_eq!(rooms["convergence_ms"]["max"], 90.0);
    assert_eq!(rooms["room_messages_per_client"]["mean"], 3.0);
    assert_eq!(rooms["moves"]["ok"], 5);
    assert_eq!(rooms["truths"]["room-0"], 2);
    let text = crate::render::text(&report);
    assert!(text.contains("rooms           30 zipf s=1 (room-0..), 3 with clients, largest 2"), "{text}");
    assert!(text.contains("3 rooms converged, 0 stale"), "{text}");
    assert!(text.contains("moves           5 ok, 0 failed of 5"), "{text}");
    let plain = Report::build(&args(), 1, state(0), &[worker(1, 1)], Ending::Completed, Duration::ZERO);
    assert!(
        serde_json::to_value(&plain).expect("serializes")["rooms"].is_null(),
        "no --rooms, no rooms part"
    );
}

#[test]
fn stale_rooms_mismatches_and_failed_moves_fail_the_run() {
    let reports = [worker(2, 2)];
    let stale = Report::build(&args(), 1, rooms_state(1), &reports, Ending::Completed, Duration::ZERO);
    assert_eq!(
        (stale.converged, stale.exit_code),
        (true, EXIT_FAILED),
        "the total converged, a room did not"
    );
    let mut mismatched = rooms_state(0);
    if let Some(rooms) = &mut mismatched.rooms {
        rooms.count_mismatches = 1;
    }
    let mismatch = Report::build(&args(), 1, mismatched, &reports, Ending::Completed, Duration::ZERO);
    assert_eq!(mismatch.exit_code, EXIT_FAILED);
    let mut refused = worker(2, 2);
    (refused.moves_attempted, refused.moves_failed) = (1, 1);
    let moves = Report::build(&args(), 1, rooms_state(0), &[refused], Ending::Completed, Duration::ZERO);
    assert_eq!(moves.exit_code, EXIT_FAILED);
    let unchecked = RunState { room_plan: Some(room_plan()), ..state(0) };
    let cut_short = Report::build(&args(), 1, unchecked, &reports, Ending::Completed, Duration::ZERO);
    assert_eq!(cut_short.exit_code, EXIT_FAILED, "rooms never checked are not converged");
}
