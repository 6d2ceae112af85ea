//! Merging the workers' room summaries and judging them against the truth.

use super::*;

fn summary(room: u32, clients: u64, min: i64, max: i64, latest: u64, last: u64) -> RoomSummary {
    RoomSummary {
        room,
        clients,
        without_value: 0,
        min,
        max,
        users_min: min,
        users_max: max,
        user_ids: Vec::new(),
        latest_change_us: latest,
        last_change_us: last,
    }
}

#[test]
fn workers_add_up_per_room() {
    let merged = merge(vec![
        vec![summary(1, 2, 3, 3, 100, 50), summary(2, 1, 1, 1, 10, 5)],
        vec![summary(1, 1, 2, 3, 90, 60)],
    ]);
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[&1], summary(1, 3, 2, 3, 100, 60));
}

#[test]
fn a_room_converges_when_all_its_clients_show_the_agreed_truth() {
    let summaries: BTreeMap<u32, RoomSummary> = [
        (0, summary(0, 3, 3, 3, 1_500, 1_000)),
        (1, summary(1, 2, 1, 2, 1_500, 1_000)),
        (2, RoomSummary { without_value: 1, ..summary(2, 2, 2, 2, 900, 1_000) }),
        (3, summary(3, 1, 1, 1, 1_000, 1_200)),
        (4, summary(4, 0, i64::MAX, i64::MIN, 0, 1_300)),
        (5, summary(5, 2, 2, 2, 1_000, 900)),
    ]
    .into_iter()
    .collect();
    let truths = [(0, Some(3)), (1, Some(2)), (2, Some(2)), (3, Some(1)), (4, Some(0)), (5, None)]
        .into_iter()
        .collect();
    let verdict = judge(&RoomLook { summaries, truths, ..RoomLook::default() }, &BTreeMap::new());
    assert_eq!(verdict.converged, vec![(0, 500), (3, 0)], "room 3 got its value before its last change");
    assert_eq!(verdict.stale, vec![1, 2, 5], "one shows 1, one has no value, one has no agreed truth");
    assert_eq!((verdict.with_clients, verdict.largest, verdict.disagreed), (5, 3, 1));
    assert!(verdict.mismatched.is_empty(), "room 4 emptied and the API says 0");
    assert!(!verdict.all_converged());
}

#[test]
fn the_truth_must_be_the_baseline_plus_the_swarms_clients() {
    let summaries = [(0, summary(0, 2, 3, 3, 10, 5)), (1, summary(1, 0, 0, 0, 0, 5))].into_iter().collect();
    let truths = [(0, Some(3)), (1, Some(1))].into_iter().collect();
    let look = RoomLook { summaries, truths, ..RoomLook::default() };
    let verdict = judge(&look, &[(0, 1)].into_iter().collect());
    assert_eq!(verdict.converged, vec![(0, 5)], "one member was there before the run");
    assert_eq!(verdict.mismatched, vec![(1, 0, 1)], "an emptied room must be back to its baseline");
}

#[test]
fn with_users_a_room_converges_on_both_numbers_and_its_users_are_the_swarms_distinct_ones() {
    // `clients` clients showing `shown` connections and `users` users, of the users `ids`.
    let tabs = |room, clients, shown, users: i64, ids: &[u32]| RoomSummary {
        users_min: users,
        users_max: users,
        user_ids: ids.to_vec(),
        ..summary(room, clients, shown, shown, 10, 5)
    };
    let merged =
        merge(vec![vec![tabs(0, 2, 5, 2, &[1, 4])], vec![tabs(0, 3, 5, 2, &[1, 4]), tabs(1, 2, 2, 2, &[7])]]);
    assert_eq!(merged[&0].user_ids, vec![1, 4], "one user's tabs in two workers are one user");
    let stale = RoomSummary { users_min: 1, ..tabs(2, 1, 1, 2, &[9]) };
    let summaries = [(0, merged[&0].clone()), (1, merged[&1].clone()), (2, stale)].into_iter().collect();
    let look = RoomLook {
        summaries,
        truths: [(0, Some(5)), (1, Some(2)), (2, Some(1))].into_iter().collect(),
        user_truths: [(0, Some(2)), (1, Some(2)), (2, Some(2))].into_iter().collect(),
    };
    let mut verdict = judge(&look, &BTreeMap::new());
    judge_users(&look, &[(1, 1)].into_iter().collect(), &mut verdict);
    assert_eq!(verdict.converged, vec![(0, 5), (1, 5)], "room 1: one user before the run, one of the swarm");
    assert_eq!(verdict.stale, vec![2], "a client shows 1 user of 2");
    assert_eq!(verdict.user_mismatched, vec![(2, 1, 2)], "room 2 holds one swarm user, the API says 2");
}
