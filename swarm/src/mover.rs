//! A client's room move, as a small state machine apart from the socket: `leave` the room it is
//! in (waiting for the ack), then `join` the room its worker wants (waiting for the ack). It
//! keeps the client's [`ClientCell`] right on the way: the room is the one the client is in or
//! joining (so the greeting of the new room, which may come before the ack, is recorded), and
//! no room between an acknowledged `leave` and the `join`.

use std::sync::atomic::Ordering;

use super::client::{ClientCell, NO_VALUE};
use super::room_wire::{self, AckAnswer};
use super::rooms::{NO_ROOM, RoomPlan};

/// What a finished move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveOutcome {
    /// The room it left, if it left one.
    pub left: Option<u32>,
    /// The room it joined, if it joined one.
    pub joined: Option<u32>,
    /// Why it stopped short (`refused_*`, `bad_ack`), if it did.
    pub error: Option<String>,
    /// From the first packet to the last ack, microseconds.
    pub latency_us: u64,
}

/// What the client does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send this packet.
    Send(String),
    /// The move is over.
    Done(MoveOutcome),
    /// Not an ack this machine waits for.
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    ack: u32,
    leaving: bool,
    from: u32,
    to: u32,
    left: bool,
    started_us: u64,
}

/// One client's moves (one at a time).
#[derive(Debug, Default)]
pub struct Mover {
    next_ack: u32,
    pending: Option<Pending>,
}

impl Mover {
    /// When the pending move started (µs since the epoch), if one is pending.
    pub fn started_us(&self) -> Option<u64> {
        self.pending.map(|pending| pending.started_us)
    }

    /// Starts moving to `cell.wanted_room`: the first packet, or `None` when there is nothing
    /// to do (already there, or a move is pending).
    pub fn start(&mut self, cell: &ClientCell, plan: &RoomPlan, now_us: u64) -> Option<String> {
        let (from, to) = (cell.room.load(Ordering::Acquire), cell.wanted_room.load(Ordering::Acquire));
        if self.pending.is_some() || from == to {
            return None;
        }
        let mut pending =
            Pending { ack: 0, leaving: from != NO_ROOM, from, to, left: false, started_us: now_us };
        let packet = self.send(&mut pending, cell, plan);
        self.pending = Some(pending);
        packet
    }

    /// The packet for the pending step; a join marks the cell as joining `to`.
    fn send(&mut self, pending: &mut Pending, cell: &ClientCell, plan: &RoomPlan) -> Option<String> {
        pending.ack = self.next_ack;
        self.next_ack = self.next_ack.wrapping_add(1);
        if pending.leaving {
            return Some(room_wire::leave_packet(pending.ack, &plan.name(pending.from)));
        }
        cell.room_value.store(NO_VALUE, Ordering::Release);
        cell.room_users.store(NO_VALUE, Ordering::Release);
        cell.room.store(pending.to, Ordering::Release);
        Some(room_wire::join_packet(pending.ack, &plan.name(pending.to)))
    }

    /// Takes the ack `id` with its `payload`.
    pub fn on_ack(
        &mut self,
        id: u32,
        payload: &str,
        cell: &ClientCell,
        plan: &RoomPlan,
        now_us: u64,
    ) -> Next {
        let Some(mut pending) = self.pending.filter(|pending| pending.ack == id) else {
            return Next::Ignore;
        };
        let answer = room_wire::ack_answer(payload).and_then(|answer| match answer {
            AckAnswer::Counts { room, .. } if plan.index_of(&room) != Some(step_room(&pending)) => {
                Err("ack_for_another_room".to_owned())
            }
            AckAnswer::Counts { .. } => Ok(()),
            AckAnswer::Refused(reason) => Err(room_wire::refusal_kind(&reason).to_owned()),
        });
        if pending.leaving {
            if answer.is_ok() {
                cell.room.store(NO_ROOM, Ordering::Release);
                pending.left = true;
                pending.leaving = false;
                if pending.to != NO_ROOM {
                    let packet = self.send(&mut pending, cell, plan);
                    self.pending = Some(pending);
                    return packet.map_or(Next::Ignore, Next::Send);
                }
            }
        } else if answer.is_err() {
            cell.room.store(NO_ROOM, Ordering::Release);
        }
        self.pending = None;
        if answer.is_err() {
            // A refused move is not tried again: the wish becomes where the client is.
            cell.wanted_room.store(cell.room.load(Ordering::Acquire), Ordering::Release);
        }
        let joined = (!pending.leaving && answer.is_ok()).then_some(pending.to).filter(|&to| to != NO_ROOM);
        Next::Done(MoveOutcome {
            left: pending.left.then_some(pending.from),
            joined,
            error: answer.err(),
            latency_us: now_us.saturating_sub(pending.started_us),
        })
    }
}

fn step_room(pending: &Pending) -> u32 {
    if pending.leaving { pending.from } else { pending.to }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::Distribution;

    fn plan() -> RoomPlan {
        RoomPlan {
            count: 10,
            distribution: Distribution::Uniform,
            zipf_s: 1.0,
            prefix: "r".to_owned(),
            seed: 0,
        }
    }

    fn cell_in(room: u32, wanted: u32) -> ClientCell {
        let cell = ClientCell::default();
        cell.room.store(room, Ordering::Release);
        cell.room_value.store(5, Ordering::Release);
        cell.wanted_room.store(wanted, Ordering::Release);
        cell
    }

    fn ok(room: &str, connections: i64) -> String {
        format!(r#"[{{"ok":true,"room":"{room}","users":{connections},"connections":{connections}}}]"#)
    }

    #[test]
    fn a_move_leaves_then_joins() {
        let (plan, cell, mut mover) = (plan(), cell_in(2, 7), Mover::default());
        assert_eq!(mover.start(&cell, &plan, 100), Some(r#"420["leave","r2"]"#.to_owned()));
        assert_eq!(mover.started_us(), Some(100));
        assert_eq!(mover.start(&cell, &plan, 101), None, "one move at a time");
        assert_eq!(mover.on_ack(9, &ok("r2", 1), &cell, &plan, 150), Next::Ignore, "not its ack");
        let next = mover.on_ack(0, &ok("r2", 1), &cell, &plan, 150);
        assert_eq!(next, Next::Send(r#"421["join","r7"]"#.to_owned()));
        assert_eq!(cell.room.load(Ordering::Acquire), 7, "joining: the greeting may come first");
        assert_eq!(cell.room_value.load(Ordering::Acquire), NO_VALUE);
        let Next::Done(outcome) = mover.on_ack(1, &ok("r7", 3), &cell, &plan, 400) else { panic!("done") };
        assert_eq!(outcome, MoveOutcome { left: Some(2), joined: Some(7), error: None, latency_us: 300 });
        assert_eq!(mover.started_us(), None);
        assert_eq!(mover.start(&cell, &plan, 500), None, "already there");
    }

    #[test]
    fn from_no_room_it_only_joins_and_to_no_room_it_only_leaves() {
        let (plan, cell, mut mover) = (plan(), cell_in(NO_ROOM, 4), Mover::default());
        assert_eq!(mover.start(&cell, &plan, 0), Some(r#"420["join","r4"]"#.to_owned()));
        let Next::Done(outcome) = mover.on_ack(0, &ok("r4", 1), &cell, &plan, 10) else { panic!("done") };
        assert_eq!((outcome.left, outcome.joined), (None, Some(4)));
        cell.wanted_room.store(NO_ROOM, Ordering::Release);
        assert_eq!(mover.start(&cell, &plan, 20), Some(r#"421["leave","r4"]"#.to_owned()));
        let Next::Done(outcome) = mover.on_ack(1, &ok("r4", 0), &cell, &plan, 30) else { panic!("done") };
        assert_eq!((outcome.left, outcome.joined), (Some(4), None));
        assert_eq!(cell.room.load(Ordering::Acquire), NO_ROOM);
    }

    #[test]
    fn refusals_leave_the_cell_where_the_client_is() {
        let refused = r#"[{"ok":false,"error":"too many join/leave events; slow down"}]"#;
        let (plan, cell, mut mover) = (plan(), cell_in(2, 7), Mover::default());
        mover.start(&cell, &plan, 0);
        let Next::Done(outcome) = mover.on_ack(0, refused, &cell, &plan, 5) else { panic!("done") };
        assert_eq!(outcome.error.as_deref(), Some("refused_rate_limited"));
        assert_eq!((outcome.left, outcome.joined), (None, None));
        assert_eq!(cell.room.load(Ordering::Acquire), 2, "still in its room");
        assert_eq!(cell.room_value.load(Ordering::Acquire), 5, "and its count still counts");
        assert_eq!(cell.wanted_room.load(Ordering::Acquire), 2, "the wish follows the truth");
        // Left, then the join is refused: in no room.
        cell.wanted_room.store(7, Ordering::Release);
        mover.start(&cell, &plan, 10);
        assert!(matches!(mover.on_ack(1, &ok("r2", 0), &cell, &plan, 11), Next::Send(_)));
        let Next::Done(outcome) = mover.on_ack(2, refused, &cell, &plan, 12) else { panic!("done") };
        assert_eq!((outcome.left, outcome.joined), (Some(2), None));
        assert_eq!(cell.room.load(Ordering::Acquire), NO_ROOM);
        // An ack naming another room is an error, not a success.
        cell.wanted_room.store(3, Ordering::Release);
        mover.start(&cell, &plan, 20);
        let Next::Done(outcome) = mover.on_ack(3, &ok("r9", 1), &cell, &plan, 21) else { panic!("done") };
        assert_eq!(outcome.error.as_deref(), Some("ack_for_another_room"));
    }
}
