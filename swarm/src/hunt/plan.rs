//! Pure planning: which sequences a round runs, in which order, against which nodes. A round
//! is a function of the seed, the round number, the [`Filter`] and the held-pool size only, so
//! `--seed` replays it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::ops::Op;

/// One sequence of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What to do.
    pub op: Op,
    /// Index of the node (in `--url` order) to do it against.
    pub node: usize,
    /// A random number for choices made when the step runs (which held client leaves).
    pub pick: u32,
}

/// What rounds may contain: the hunt's `--ops`, `--nodes` and `--round-size`, narrowed while
/// shrinking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// Operations to draw from (sorted, not empty).
    pub ops: Vec<Op>,
    /// Node indices to send sequences to (sorted, not empty).
    pub nodes: Vec<usize>,
    /// Sequences per round.
    pub size: usize,
}

/// The held pool the planner keeps a round within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBounds {
    /// Held clients connected when the round starts.
    pub now: usize,
    /// `--held`: the pool wanders between half and one and a half times this.
    pub target: usize,
}

impl HeldBounds {
    fn low(self) -> usize {
        self.target / 2
    }

    fn high(self) -> usize {
        self.target + self.target.div_ceil(2)
    }
}

/// The random generator of round `round` of a hunt seeded with `seed`: one ChaCha8 stream per
/// round, so a round's plan does not depend on how many numbers earlier rounds drew.
pub fn round_rng(seed: u64, round: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(round);
    rng
}

/// Plans one round: `filter.size` steps drawn by weight, in random order, on random nodes.
/// Held-pool operations are steered so the pool stays between `target / 2` and `1.5 × target`
/// (a `leave` below becomes a `join`, a `join` above becomes a `leave`, when allowed).
pub fn round(seed: u64, round: u64, filter: &Filter, held: HeldBounds) -> Vec<Step> {
    let mut rng = round_rng(seed, round);
    let ops: Vec<Op> = filter.ops.iter().copied().filter(|op| held.target > 0 || !op.holds()).collect();
    let total_weight: u32 = ops.iter().map(|op| op.info().weight).sum();
    if ops.is_empty() || filter.nodes.is_empty() || total_weight == 0 {
        return Vec::new();
    }
    let mut pool = held.now;
    let mut steps = Vec::with_capacity(filter.size);
    for _ in 0..filter.size {
        let drawn = draw(&mut rng, &ops, total_weight);
        let op = steer(drawn, pool, held, &ops);
        match op {
            Op::Join => pool += 1,
            Op::Leave => pool = pool.saturating_sub(1),
            _ => {}
        }
        let node = filter.nodes[rng.random_range(0..filter.nodes.len())];
        steps.push(Step { op, node, pick: rng.random() });
    }
    steps
}

/// Draws one operation by weight.
fn draw(rng: &mut ChaCha8Rng, ops: &[Op], total_weight: u32) -> Op {
    let mut ticket = rng.random_range(0..total_weight);
    for &op in ops {
        let weight = op.info().weight;
        if ticket < weight {
            return op;
        }
        ticket -= weight;
    }
    ops[ops.len() - 1]
}

/// Keeps the held pool within its bounds when the other direction is allowed.
fn steer(op: Op, pool: usize, held: HeldBounds, allowed: &[Op]) -> Op {
    let can = |op: Op| allowed.contains(&op);
    match op {
        Op::Leave | Op::Reconnect if pool <= held.low() && can(Op::Join) => Op::Join,
        Op::Join if pool >= held.high() && can(Op::Leave) => Op::Leave,
        other => other,
    }
}

/// Counts per operation, for reports: `[(op, count)]` in table order.
pub fn census(steps: &[Step]) -> Vec<(Op, usize)> {
    let mut counts: Vec<(Op, usize)> = Vec::new();
    for step in steps {
        match counts.iter_mut().find(|(op, _)| *op == step.op) {
            Some((_, count)) => *count += 1,
            None => counts.push((step.op, 1)),
        }
    }
    counts.sort();
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything(size: usize) -> Filter {
        Filter { ops: Op::all(), nodes: vec![0, 1, 2], size }
    }

    const HELD: HeldBounds = HeldBounds { now: 20, target: 20 };

    #[test]
    fn the_same_seed_and_round_give_the_same_plan() {
        let first = round(42, 7, &everything(200), HELD);
        assert_eq!(first.len(), 200);
        assert_eq!(first, round(42, 7, &everything(200), HELD));
        assert_ne!(first, round(43, 7, &everything(200), HELD), "another seed, another plan");
        assert_ne!(first, round(42, 8, &everything(200), HELD), "another round, another plan");
    }

    #[test]
    fn plans_use_every_allowed_operation_and_node_and_nothing_else() {
        let steps = round(1, 0, &everything(2_000), HELD);
        for op in Op::all() {
            assert!(steps.iter().any(|step| step.op == op), "{op} never drawn");
        }
        for node in 0..3 {
            assert!(steps.iter().any(|step| step.node == node), "node {node} never drawn");
        }
        let narrow = Filter { ops: vec![Op::WsAckHangup, Op::PollConnectDrop], nodes: vec![2], size: 50 };
        let steps = round(1, 0, &narrow, HELD);
        assert!(steps.iter().all(|step| narrow.ops.contains(&step.op) && step.node == 2));
    }

    #[test]
    fn the_held_pool_stays_within_its_bounds() {
        let only_held = Filter { ops: vec![Op::Join, Op::Leave, Op::Reconnect], nodes: vec![0], size: 500 };
        for seed in 0..20 {
            let mut pool = 20i64;
            for step in round(seed, 0, &only_held, HELD) {
                pool += match step.op {
                    Op::Join => 1,
                    Op::Leave => -1,
                    _ => 0,
                };
                assert!((10..=30).contains(&pool), "seed {seed}: pool {pool}");
            }
        }
        let no_pool = round(3, 0, &everything(300), HeldBounds { now: 0, target: 0 });
        assert!(no_pool.iter().all(|step| !step.op.holds()), "--held 0 plans no held-pool steps");
        let leaves_only = Filter { ops: vec![Op::Leave], nodes: vec![0], size: 5 };
        let steps = round(3, 0, &leaves_only, HeldBounds { now: 0, target: 20 });
        assert!(steps.iter().all(|step| step.op == Op::Leave), "no join to steer to: leaves stay leaves");
    }

    #[test]
    fn census_counts_in_table_order() {
        let step = |op| Step { op, node: 0, pick: 0 };
        let steps = [step(Op::Leave), step(Op::WsAckHangup), step(Op::Leave)];
        assert_eq!(census(&steps), vec![(Op::WsAckHangup, 1), (Op::Leave, 2)]);
    }
}
