//! The hunt's truth: totals, local sockets and rooms.

use super::*;

fn shown(users: i64, local: i64) -> Option<Shown> {
    Some(Shown { users, local })
}

fn client(node: usize, value: i64) -> ClientSight {
    ClientSight { node, value: Some(value), room: None, room_value: None }
}

fn in_room(node: usize, value: i64, room: u32, room_value: i64) -> ClientSight {
    ClientSight { node, value: Some(value), room: Some(room), room_value: Some(room_value) }
}

fn listing(rooms: &[(&str, i64)]) -> Option<BTreeMap<String, i64>> {
    Some(rooms.iter().map(|(room, count)| ((*room).to_owned(), *count)).collect())
}

fn empty_rooms(nodes: usize) -> Vec<Option<BTreeMap<String, i64>>> {
    vec![listing(&[]); nodes]
}

#[test]
fn the_truth_is_the_held_clients_plus_the_offsets() {
    // Two nodes with 5 users before the hunt (2 on a, 3 on b), then 3 held clients.
    let before = Sight { nodes: vec![shown(5, 2), shown(5, 3)], rooms: empty_rooms(2), clients: vec![] };
    let expectation = Expectation::baseline(&before, "h-").expect("both answered");
    let now = Sight {
        nodes: vec![shown(8, 4), shown(8, 4)],
        rooms: empty_rooms(2),
        clients: vec![client(0, 8), client(0, 8), client(1, 8)],
    };
    assert!(expectation.judge(&now).settled());
    let stale_client = Sight { clients: vec![client(0, 8), client(0, 7), client(1, 8)], ..now.clone() };
    assert_eq!(expectation.judge(&stale_client).stale_clients, 1);
    assert!(!expectation.judge(&stale_client).settled());
    let silent_node = Sight { nodes: vec![shown(8, 4), None], ..now.clone() };
    assert!(!expectation.judge(&silent_node).settled());
    assert_eq!(Expectation::baseline(&silent_node, "h-"), None);
    let unlisted = Sight { rooms: vec![listing(&[]), None], ..now };
    let verdict = expectation.judge(&unlisted);
    assert!(!verdict.settled(), "a node whose rooms cannot be read is not settled");
    assert_eq!(verdict.rooms[0].seen, None);
}

#[test]
fn a_drift_becomes_part_of_the_truth() {
    let mut expectation = Expectation {
        users_offset: vec![0, 0],
        local_offset: vec![0, 0],
        room_offsets: vec![BTreeMap::new(), BTreeMap::new()],
        room_prefix: "h-".to_owned(),
    };
    // One leaked socket on node 1: both show 3 users for 2 held clients, node 1 one local too many.
    let leaked = Sight {
        nodes: vec![shown(3, 1), shown(3, 2)],
        rooms: empty_rooms(2),
        clients: vec![client(0, 3), client(1, 3)],
    };
    let verdict = expectation.judge(&leaked);
    assert!(!verdict.settled());
    assert_eq!(verdict.nodes[1].expected_local, 1);
    assert_eq!(verdict.nodes[1].seen_local, Some(2));
    expectation.rebaseline(&verdict);
    assert_eq!(
        (expectation.users_offset.clone(), expectation.local_offset.clone()),
        (vec![1, 1], vec![0, 1])
    );
    assert!(expectation.judge(&leaked).settled());
}

#[test]
fn every_room_must_list_its_held_clients_and_they_must_show_it() {
    let before = Sight { nodes: vec![shown(0, 0), shown(0, 0)], rooms: empty_rooms(2), clients: vec![] };
    let expectation = Expectation::baseline(&before, "h-").expect("answered");
    // Two held clients in room 1 (one per node), one in room 4, one in none.
    let clients = vec![in_room(0, 4, 1, 2), in_room(1, 4, 1, 2), in_room(1, 4, 4, 1), client(0, 4)];
    let both = listing(&[("h-1", 2), ("h-4", 1)]);
    let now =
        Sight { nodes: vec![shown(4, 2), shown(4, 2)], rooms: vec![both.clone(), both.clone()], clients };
    assert!(expectation.judge(&now).settled(), "{:?}", expectation.judge(&now));
    // A room the API counts one too many in on node 1, and one the API forgot on node 0.
    let wrong =
        Sight { rooms: vec![listing(&[("h-1", 2)]), listing(&[("h-1", 3), ("h-4", 1)])], ..now.clone() };
    let verdict = expectation.judge(&wrong);
    let seen: Vec<(usize, &str, i64, Option<i64>)> =
        verdict.rooms.iter().map(|r| (r.node, r.room.as_str(), r.expected, r.seen)).collect();
    assert_eq!(seen, vec![(0, "h-4", 1, Some(0)), (1, "h-1", 2, Some(3))]);
    // A room nobody holds must not be listed at all.
    let stray =
        Sight { rooms: vec![both.clone(), listing(&[("h-1", 2), ("h-4", 1), ("h-9", 1)])], ..now.clone() };
    assert_eq!(expectation.judge(&stray).rooms[0].room, "h-9");
    // A held client showing an old room count.
    let mut clients = now.clients.clone();
    clients[1].room_value = Some(1);
    let stale = Sight { clients, ..now.clone() };
    assert_eq!(expectation.judge(&stale).stale_room_clients, 1);
    clients = now.clients.clone();
    clients[2].room_value = None;
    assert_eq!(expectation.judge(&Sight { clients, ..now }).stale_room_clients, 1);
}

#[test]
fn a_room_drift_becomes_part_of_the_truth() {
    let before = Sight { nodes: vec![shown(0, 0)], rooms: vec![listing(&[("h-0", 1)])], clients: vec![] };
    let mut expectation = Expectation::baseline(&before, "h-").expect("answered");
    assert_eq!(expectation.room_offsets[0].get("h-0"), Some(&1), "a stranger was there before");
    let clients = vec![in_room(0, 1, 0, 2)];
    let now =
        Sight { nodes: vec![shown(1, 1)], rooms: vec![listing(&[("h-0", 2)])], clients: clients.clone() };
    assert!(expectation.judge(&now).settled());
    let leaked = Sight { rooms: vec![listing(&[("h-0", 2), ("h-3", 1)])], ..now };
    let verdict = expectation.judge(&leaked);
    assert_eq!(verdict.rooms.len(), 1);
    expectation.rebaseline(&verdict);
    assert!(expectation.judge(&leaked).settled());
    let healed = Sight { rooms: vec![listing(&[("h-0", 2)])], ..leaked };
    expectation.rebaseline(&expectation.judge(&healed));
    assert_eq!(expectation.room_offsets[0].len(), 1, "offsets keep no zeros");
}
