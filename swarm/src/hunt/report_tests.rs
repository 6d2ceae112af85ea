//! The hunt report: fields, exit codes and text.

use super::*;
use crate::hunt::expect::{ClientSight, Expectation, RoomVerdict, Shown, Sight};
use crate::hunt::ops::Op;
use crate::hunt::plan::{Filter, Mix};
use crate::hunt::text::text;

fn setup() -> Setup {
    Setup {
        urls: vec!["http://127.0.0.1:3001".to_owned(), "http://127.0.0.1:3002".to_owned()],
        seed: 77,
        held: 4,
        burners: 2,
        room_prefix: "hunt-5-".to_owned(),
    }
}

fn step(op: Op, node: usize) -> Step {
    Step { op, node, pick: 0 }
}

/// A tally of `hangups` WebSocket hang-ups and 4 joins, one of them failed.
fn findings(hangups: u64) -> Findings {
    let mut findings =
        Findings { rounds: 3, node_ids: vec!["a".to_owned(), "b".to_owned()], ..Default::default() };
    let tally = &mut findings.tally;
    tally.per_kind.insert(Op::WsConnectHangup, KindCount { run: hangups, ..Default::default() });
    tally.per_kind.insert(Op::Join, KindCount { run: 3, failed: 1, ..Default::default() });
    tally.errors.insert("join: tcp_refused".to_owned(), 1);
    findings.held_at_end = 3;
    findings
}

/// The verdict of one leaked socket on node 1 with 3 held clients, in room 2 on both nodes.
fn leak() -> Verdict {
    let expectation = Expectation {
        users_offset: vec![0, 0],
        local_offset: vec![0, 0],
        room_offsets: vec![Default::default(), Default::default()],
        room_prefix: "hunt-5-".to_owned(),
    };
    let shown = |users, local| Some(Shown { users, local });
    let client = |node| ClientSight { node, value: Some(4), room: None, room_value: None };
    let room = Some([("hunt-5-2".to_owned(), 1)].into_iter().collect());
    let sight = Sight {
        nodes: vec![shown(4, 2), shown(4, 2)],
        rooms: vec![room.clone(), room],
        clients: vec![client(0), client(0), client(1)],
    };
    expectation.judge(&sight)
}

#[test]
fn a_clean_hunt_exits_zero_and_counts_every_kind() {
    let report = HuntReport::build(&setup(), findings(96), &Ending::Completed, Duration::from_secs(2));
    assert_eq!(report.exit_code, EXIT_OK);
    assert_eq!(report.sequences, 100);
    assert_eq!(report.sequences_failed, 1);
    assert_eq!(report.drifts, 0);
    assert_eq!(report.per_kind["ws_connect_hangup"].run, 96);
    assert_eq!(report.first_drift_after_sequences, None);
    let json = serde_json::to_value(&report).expect("serializes");
    for field in [
        "seed",
        "sequences",
        "rounds",
        "drifts",
        "per_kind",
        "shortest",
        "duration_s",
        "exit_code",
        "room_prefix",
    ] {
        assert!(json.get(field).is_some(), "{field} missing");
    }
    let text = text(&report);
    assert!(text.contains("seed 77") && text.contains("100 sequences in 3 rounds"), "{text}");
    assert!(text.contains("ws_connect_hangup 96") && text.contains("join 3 (1 failed, 0 skipped)"), "{text}");
    assert!(text.contains("drifts          0") && text.contains("OK (exit code 0)"), "{text}");
}

#[test]
fn a_drift_fails_the_hunt_and_is_shown_with_its_shortest_round() {
    let mut findings = findings(96);
    let steps = vec![step(Op::WsConnectHangup, 1), step(Op::Join, 0), step(Op::WsConnectHangup, 1)];
    findings.drift(Drift::new(Some(2), &steps, &leak(), (60, Duration::from_millis(1_500))));
    findings.tally.round_of(&steps, true);
    findings.tally.round_of(&steps[..1], false);
    let filter = Filter { ops: vec![Op::WsConnectHangup], nodes: vec![1], size: 2, mix: Mix::All };
    let smallest = Failing { filter, seed: 123, round: 0, steps: steps[..1].to_vec() };
    findings.shrunk = Some(Shrunk { smallest, trials: 9, reproduced: 2 });
    let report = HuntReport::build(&setup(), findings, &Ending::Completed, Duration::from_secs(2));
    assert_eq!(report.exit_code, EXIT_FAILED);
    assert_eq!(report.drifts, 1);
    assert_eq!(report.first_drift_after_sequences, Some(60));
    let drift = &report.drift_rounds[0];
    assert_eq!(drift.ops["ws_connect_hangup"], 2);
    assert_eq!((drift.nodes[1].expected_local, drift.nodes[1].seen_local), (1, Some(2)));
    let leaked_room = RoomVerdict { node: 1, room: "hunt-5-2".to_owned(), expected: 0, seen: Some(1) };
    assert_eq!(drift.rooms.len(), 2);
    assert_eq!(drift.rooms[1], leaked_room);
    let shortest = report.shortest.as_ref().expect("shrunk");
    assert_eq!(shortest.steps, vec!["ws_connect_hangup@1"]);
    assert!(
        shortest
            .replay
            .contains("--seed 123 --ops ws_connect_hangup --nodes 1 --round-size 2 --mix all --rounds 1")
    );
    assert!(shortest.replay.contains("--url http://127.0.0.1:3002"));
    let text = text(&report);
    assert!(text.contains("drifts          1 (the first after 60 sequences, 1.5 s)"), "{text}");
    assert!(text.contains("round 2 after 60 sequences: node 0: users 3 expected 4 seen"), "{text}");
    assert!(text.contains("node 1: users 3 expected 4 seen, local 1 expected 2 seen"), "{text}");
    assert!(
        text.contains("rooms: hunt-5-2 on node 0 0 expected 1 seen, hunt-5-2 on node 1 0 expected 1 seen"),
        "{text}"
    );
    assert!(text.contains("1 step(s) on node(s) [1]: ws_connect_hangup×1; seed 123 round 0"), "{text}");
    assert!(
        text.contains(
            "suspects        join (1 of 1 rounds, 100.0%), ws_connect_hangup (1 of 2 rounds, 50.0%)"
        ),
        "{text}"
    );
    assert!(text.contains("FAILED (exit code 1)"), "{text}");
}

#[test]
fn cut_short_and_empty_hunts_do_not_pass() {
    let interrupted = HuntReport::build(&setup(), findings(5), &Ending::Interrupted, Duration::ZERO);
    assert_eq!(interrupted.exit_code, EXIT_INTERRUPTED);
    let late = HuntReport::build(&setup(), findings(5), &Ending::TimedOut, Duration::ZERO);
    assert_eq!(late.exit_code, EXIT_TIMED_OUT);
    let failed =
        HuntReport::build(&setup(), Findings::default(), &Ending::Failed("no".into()), Duration::ZERO);
    assert_eq!((failed.exit_code, failed.failure.as_deref()), (EXIT_FAILED, Some("no")));
    let mut nothing_worked = Findings::default();
    nothing_worked.tally.per_kind.insert(Op::Join, KindCount { failed: 4, ..Default::default() });
    let report = HuntReport::build(&setup(), nothing_worked, &Ending::Completed, Duration::ZERO);
    assert_eq!(report.exit_code, EXIT_FAILED, "a hunt where every sequence failed proves nothing");
}

#[test]
fn the_failing_round_to_shrink_is_the_one_with_the_fewest_kinds() {
    let mut findings = Findings::default();
    let round = |number, ops: &[Op]| {
        let filter = Filter { ops: Op::all(), nodes: vec![0], size: 4, mix: Mix::Subsets };
        Failing { filter, seed: 1, round: number, steps: ops.iter().map(|&op| step(op, 0)).collect() }
    };
    findings.failing(round(3, &[Op::Join, Op::WsAckReset, Op::Join]));
    findings.failing(round(5, &[Op::WsConnectClose, Op::WsConnectClose]));
    findings.failing(round(8, &[Op::WsAckHangup]));
    assert_eq!(findings.narrowest_failing.map(|failing| failing.round), Some(5));
}

#[test]
fn only_the_first_drifts_are_kept_but_all_are_counted() {
    let mut findings = findings(1);
    for round in 0..(DRIFTS_KEPT as u64 + 5) {
        findings.drift(Drift::new(Some(round), &[], &leak(), (round, Duration::ZERO)));
    }
    let report = HuntReport::build(&setup(), findings, &Ending::Completed, Duration::ZERO);
    assert_eq!(report.drifts, DRIFTS_KEPT as u64 + 5);
    assert_eq!(report.drift_rounds.len(), DRIFTS_KEPT);
}
