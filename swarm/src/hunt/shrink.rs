//! Shrinking a drift: narrow the failing round's [`Filter`] (fewer operation kinds, one node,
//! half the size) while some trial round of the narrower filter still drifts. The races are
//! rare, so each narrower filter gets a few trial rounds, and the whole search a bounded number.

use serde::Serialize;

use super::ops::Op;
use super::plan::{Filter, Mix, Step};

/// A round that drifted: enough to replay it (`--seed`, `--rounds round + 1` and the filter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failing {
    /// What the round could contain.
    pub filter: Filter,
    /// The hunt seed it was planned from.
    pub seed: u64,
    /// Its round number under that seed.
    pub round: u64,
    /// What it ran.
    pub steps: Vec<Step>,
}

/// Bounds on the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Trial rounds per narrower filter before it is given up.
    pub tries: u32,
    /// Trial rounds in all.
    pub trials: u32,
}

/// The smallest failing round found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shrunk {
    /// The smallest failing round (the original one when nothing narrower drifted).
    pub smallest: Failing,
    /// Trial rounds run.
    pub trials: u32,
    /// How many of them drifted.
    pub reproduced: u32,
}

/// Trial rounds per narrower filter: about as many rounds as the hunt needed per drift of the
/// failing round's likeliest kind (`rounds_per_drift`), at least 3, at most a quarter of the
/// budget, so rare races still get a fair chance and the search still reaches a few levels.
pub fn tries_for(rounds_per_drift: f64, trials: u32) -> u32 {
    let most = (trials / 4).max(MIN_TRIES);
    if !rounds_per_drift.is_finite() || rounds_per_drift <= 0.0 {
        return MIN_TRIES;
    }
    (rounds_per_drift.ceil() as u32).clamp(MIN_TRIES, most)
}

/// Fewest trial rounds per narrower filter.
const MIN_TRIES: u32 = 3;

/// The seed of trial `number` of a hunt seeded with `seed` (trial rounds are round 0 of it).
pub fn trial_seed(seed: u64, number: u32) -> u64 {
    seed ^ u64::from(number + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Narrower filters worth a try, most promising first. They mix exactly the kinds the failing
/// round ran ([`Mix::All`]): its two halves while there are more than three kinds (a binary
/// search: few trials per level), else each single kind (most frequent first); then each single
/// node; then half the size.
pub fn candidates(current: &Failing) -> Vec<Filter> {
    let mut kinds: Vec<(usize, Op)> = current
        .filter
        .ops
        .iter()
        .map(|&op| (current.steps.iter().filter(|step| step.op == op).count(), op))
        .filter(|&(count, _)| count > 0)
        .collect();
    kinds.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut present: Vec<Op> = kinds.iter().map(|&(_, op)| op).collect();
    present.sort();
    let base = Filter { ops: present.clone(), mix: Mix::All, ..current.filter.clone() };
    let mut out = Vec::new();
    if present.len() > 3 {
        let (first, second) = present.split_at(present.len() / 2);
        out.push(Filter { ops: first.to_vec(), ..base.clone() });
        out.push(Filter { ops: second.to_vec(), ..base.clone() });
    } else if present.len() > 1 {
        out.extend(kinds.iter().map(|&(_, op)| Filter { ops: vec![op], ..base.clone() }));
    } else if base != current.filter {
        out.push(base.clone());
    }
    if base.nodes.len() > 1 {
        out.extend(base.nodes.iter().map(|&node| Filter { nodes: vec![node], ..base.clone() }));
    }
    if base.size > 1 {
        out.push(Filter { size: base.size / 2, ..base.clone() });
    }
    let mut unique: Vec<Filter> = Vec::with_capacity(out.len());
    for candidate in out {
        if !unique.contains(&candidate) {
            unique.push(candidate);
        }
    }
    unique
}

/// Searches for a smaller failing round. `trial(filter, seed)` plans round 0 of `seed` under
/// `filter`, runs it, and returns its steps when it drifted.
pub async fn shrink<T>(start: Failing, budget: Budget, mut trial: T) -> Shrunk
where
    T: AsyncFnMut(&Filter, u64) -> Option<Vec<Step>>,
{
    let mut shrunk = Shrunk { smallest: start.clone(), trials: 0, reproduced: 0 };
    'narrower: loop {
        for filter in candidates(&shrunk.smallest) {
            for _ in 0..budget.tries {
                if shrunk.trials >= budget.trials {
                    return shrunk;
                }
                let seed = trial_seed(start.seed, shrunk.trials);
                shrunk.trials += 1;
                if let Some(steps) = trial(&filter, seed).await {
                    shrunk.reproduced += 1;
                    shrunk.smallest = Failing { filter, seed, round: 0, steps };
                    continue 'narrower;
                }
            }
        }
        return shrunk;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hunt::plan::{self, HeldBounds};

    const HELD: HeldBounds = HeldBounds { now: 4, target: 4 };

    fn failing(mut ops: Vec<Op>, size: usize) -> Failing {
        ops.sort();
        let filter = Filter { ops, nodes: vec![0, 1], size, mix: Mix::All };
        let steps = plan::round(9, 3, &filter, HELD);
        Failing { filter, seed: 9, round: 3, steps }
    }

    /// A stand-in for a node with a deterministic bug: a round drifts when it hangs up right
    /// after a CONNECT on node 1 at least `needed` times.
    fn buggy(needed: usize) -> impl AsyncFnMut(&Filter, u64) -> Option<Vec<Step>> {
        move |filter: &Filter, seed: u64| {
            let steps = plan::round(seed, 0, filter, HELD);
            let hits = steps.iter().filter(|s| s.op == Op::WsConnectHangup && s.node == 1).count();
            std::future::ready((hits >= needed).then_some(steps))
        }
    }

    #[tokio::test]
    async fn shrinks_to_the_guilty_kind_the_node_and_a_small_round() {
        let start = failing(Op::all(), 64);
        let budget = Budget { tries: 3, trials: 100 };
        let shrunk = shrink(start, budget, buggy(1)).await;
        let smallest = &shrunk.smallest.filter;
        assert_eq!(smallest.ops, vec![Op::WsConnectHangup]);
        assert_eq!(smallest.nodes, vec![1]);
        assert_eq!(smallest.size, 1, "one hang-up on node 1 is enough");
        assert_eq!(shrunk.smallest.steps.len(), 1);
        assert_eq!(shrunk.smallest.round, 0);
        assert!(shrunk.reproduced >= 3 && shrunk.trials <= 100, "{shrunk:?}");
        // The result replays: round 0 of its seed under its filter is the same round.
        let replay = plan::round(shrunk.smallest.seed, 0, smallest, HELD);
        assert_eq!(replay, shrunk.smallest.steps);
    }

    #[tokio::test]
    async fn stops_at_the_budget_and_keeps_the_original_when_nothing_smaller_fails() {
        let start = failing(Op::all(), 16);
        let never = async |_: &Filter, _: u64| None;
        let shrunk = shrink(start.clone(), Budget { tries: 2, trials: 7 }, never).await;
        assert_eq!(shrunk.trials, 7);
        assert_eq!(shrunk.reproduced, 0);
        assert_eq!(shrunk.smallest, start);
        let none = shrink(start.clone(), Budget { tries: 2, trials: 0 }, never).await;
        assert_eq!(none.trials, 0);
    }

    #[test]
    fn rare_drifts_get_more_tries_within_the_budget() {
        assert_eq!(tries_for(1.0, 30), 3);
        assert_eq!(tries_for(5.2, 30), 6);
        assert_eq!(tries_for(140.0, 30), 7);
        assert_eq!(tries_for(140.0, 400), 100);
        assert_eq!(tries_for(f64::INFINITY, 400), 3);
        assert_eq!(tries_for(9.0, 4), 3);
    }

    #[test]
    fn candidates_narrow_kinds_then_nodes_then_size() {
        let start = failing(vec![Op::WsAckHangup, Op::Leave, Op::PollConnectDrop], 8);
        let candidates = candidates(&start);
        let singles = candidates.iter().take_while(|filter| filter.ops.len() == 1).count();
        assert_eq!(singles, 3, "{candidates:?}");
        assert!(candidates.iter().any(|filter| filter.nodes == vec![1] && filter.ops.len() == 3));
        assert_eq!(candidates.last().map(|filter| filter.size), Some(4));
        let many = failing(Op::all(), 200);
        let halves: Vec<Filter> = super::candidates(&many).into_iter().take(2).collect();
        let ran = plan::census(&many.steps).len();
        assert!(ran > 10, "{ran}");
        assert_eq!(halves[0].ops.len() + halves[1].ops.len(), ran, "the kinds the round ran: {halves:?}");
        assert!(halves[0].ops.iter().all(|op| !halves[1].ops.contains(op)));
        let done = Failing {
            filter: Filter { ops: vec![Op::WsAckHangup], nodes: vec![0], size: 1, mix: Mix::All },
            ..start.clone()
        };
        assert!(super::candidates(&done).is_empty());
        assert_ne!(trial_seed(5, 0), trial_seed(5, 1));
    }
}
