//! Quiet (every fault stops) and what must hold then; and the checks of one phase's window.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;

use super::{Cluster, Member, Phase, QUIET, TIMING, Truth, room_name, room_number, until};
use crate::coordinator::SocketId;
use crate::coordinator::tests::proptests::harness::Sent;
use crate::presence::{Counts, PresenceBackend};

/// What one socket received: `refresh users` values, or one room's `room users` counts; each
/// with its position in the node's log.
fn global_sequence(log: &[Sent], socket: SocketId) -> Vec<(usize, i64)> {
    let mut connected = false;
    let mut out = Vec::new();
    for (at, sent) in log.iter().enumerate() {
        match sent {
            Sent::Connected(s) if *s == socket => connected = true,
            Sent::Gone(s) if *s == socket => connected = false,
            Sent::Greet(s, value) if *s == socket && connected => out.push((at, *value)),
            Sent::Broadcast(value) if connected => out.push((at, *value)),
            _ => {}
        }
    }
    out
}

fn room_sequence(log: &[Sent], socket: SocketId, room: u8) -> Vec<(usize, Counts)> {
    let mut inside = false;
    let mut out = Vec::new();
    for (at, sent) in log.iter().enumerate() {
        match sent {
            Sent::Enter(s, r) if *s == socket && room_number(r) == room => inside = true,
            Sent::Exit(s, r) if *s == socket && room_number(r) == room => inside = false,
            Sent::Gone(s) if *s == socket => inside = false,
            Sent::RoomGreet(s, r, counts) if *s == socket && room_number(r) == room && inside => {
                out.push((at, *counts))
            }
            Sent::RoomBroadcast(r, counts) if inside && room_number(r) == room => out.push((at, *counts)),
            _ => {}
        }
    }
    out
}

fn sockets_in(log: &[Sent]) -> BTreeSet<SocketId> {
    log.iter().filter_map(|sent| if let Sent::Connected(s) = sent { Some(*s) } else { None }).collect()
}

/// Whether room counts sent in a phase lie between the truths `low` and `high`: sockets exactly,
/// distinct users give or take the signed users that have sockets on several nodes (see
/// `Truth::shared`).
fn within(value: Counts, room: u8, low: &Truth, high: &Truth, phase: Phase) -> bool {
    // The most shared users in the window: at its end while growing, at its start while shrinking.
    let slack = high.shared(room);
    let (low, high) = (low.room(room), high.room(room));
    let users =
        if phase == Phase::Growing { low.users..=high.users + slack } else { low.users - slack..=high.users };
    (low.connections..=high.connections).contains(&value.connections) && users.contains(&value.users)
}

impl Member {
    /// Whether this node, and every client of it, shows `truth`.
    fn shows(&self, truth: &Truth) -> bool {
        let state = self.state.borrow().clone();
        if state.counts != Some(truth.global) {
            return false;
        }
        let log = self.clients.entries();
        for (socket, (_, rooms)) in &self.sockets {
            let id = SocketId((*socket).into());
            if global_sequence(&log, id).last().map(|(_, v)| *v) != Some(truth.global.connections) {
                return false;
            }
            for room in rooms {
                let shown = state
                    .top_rooms
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .find(|r| r.room == room_name(*room));
                if shown.map(|r| r.counts) != Some(truth.room(*room)) {
                    return false;
                }
                if room_sequence(&log, id, *room).last().map(|(_, c)| *c) != Some(truth.room(*room)) {
                    return false;
                }
            }
        }
        true
    }
}

impl Cluster {
    /// Every fault stops; then every node, and every client, must show the truth, and the
    /// backend must hold it.
    pub async fn settle(&mut self) {
        for member in &mut self.members {
            member.backend.fail_before.store(0, Ordering::SeqCst);
            member.backend.lose_reply.store(0, Ordering::SeqCst);
            if let Some(release) = member.release.take() {
                release.send_replace(true);
            }
            member.backend.resubscribe();
        }
        let truth = self.truth();
        until("every node and client shows the truth", QUIET, || self.holds(&truth)).await;
        // And it stays so (a heartbeat later, nothing moved).
        tokio::time::sleep(TIMING.heartbeat_interval * 2).await;
        assert!(self.holds(&truth), "the truth held, then was lost in quiet");
    }

    /// Whether every node and client shows `truth`, and the backend holds it (every room's
    /// count, and the listing of exactly the non-empty rooms).
    fn holds(&self, truth: &Truth) -> bool {
        let rooms: Vec<_> = (0..4).map(room_name).collect();
        let held = self.shared.inner.room_counts(&rooms).now_or_never().and_then(Result::ok);
        let expected: Vec<Counts> = (0..4).map(|r| truth.room(r)).collect();
        let listed = self.shared.inner.list_rooms("", 100, None).now_or_never().and_then(Result::ok);
        let listed: Option<Vec<u8>> =
            listed.map(|page| page.items.iter().map(|r| room_number(&r.room)).collect());
        let non_empty: Vec<u8> = truth.rooms.keys().copied().collect();
        held == Some(expected) && listed == Some(non_empty) && self.members.iter().all(|m| m.shows(truth))
    }

    /// In a phase where the truth only grows (shrinks), every value sent lies between the truth
    /// at the phase's start and the truth when it was sent, and no client's sequence goes down
    /// (up).
    pub fn check_window(&self, phase: Phase, start: usize) {
        if phase == Phase::Mixed {
            return;
        }
        let first = &self.truths[start];
        for member in &self.members {
            let log = member.clients.entries();
            let from = log.iter().position(|s| matches!(s, Sent::Truth(i) if *i == start)).expect("marked");
            let mut now = first;
            for sent in &log[from..] {
                let (low, high) = if phase == Phase::Growing { (first, now) } else { (now, first) };
                match sent {
                    Sent::Truth(i) => now = &self.truths[*i],
                    Sent::Greet(_, value) | Sent::Broadcast(value) => assert!(
                        (low.global.connections..=high.global.connections).contains(value),
                        "{}: {value} sent outside [{}, {}] in a {phase:?} phase",
                        member.name,
                        low.global.connections,
                        high.global.connections
                    ),
                    Sent::RoomGreet(_, room, counts) | Sent::RoomBroadcast(room, counts) => {
                        let r = room_number(room);
                        assert!(
                            within(*counts, r, low, high, phase),
                            "{}: {room} {counts:?} sent outside [{:?}, {:?}] in a {phase:?} phase",
                            member.name,
                            low.room(r),
                            high.room(r)
                        );
                    }
                    _ => {}
                }
            }
            self.check_sequences(member, &log, from, phase);
        }
    }

    fn check_sequences(&self, member: &Member, log: &[Sent], from: usize, phase: Phase) {
        let ordered = |a: i64, b: i64| if phase == Phase::Growing { a <= b } else { a >= b };
        for socket in sockets_in(log) {
            let values: Vec<i64> = global_sequence(log, socket)
                .into_iter()
                .filter(|(at, _)| *at >= from)
                .map(|(_, v)| v)
                .collect();
            assert!(
                values.windows(2).all(|w| ordered(w[0], w[1])),
                "{}: socket {} received {values:?} in a {phase:?} phase",
                member.name,
                socket.0
            );
            for room in 0..4 {
                let counts: Vec<Counts> = room_sequence(log, socket, room)
                    .into_iter()
                    .filter(|(at, _)| *at >= from)
                    .map(|(_, c)| c)
                    .collect();
                // Sockets only: distinct users may be off by the shared ones until a write lands.
                let moves = |w: &[Counts]| ordered(w[0].connections, w[1].connections);
                assert!(
                    counts.windows(2).all(moves),
                    "{}: socket {} received {counts:?} in r{room} in a {phase:?} phase",
                    member.name,
                    socket.0
                );
            }
        }
    }
}
