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

/// How a round picks the operations it mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mix {
    /// A quarter of the rounds mix every allowed operation, the others one to three kinds (the
    /// held-client operations count as one), so that drifts point at the kinds that cause them.
    Subsets,
    /// Every round mixes every allowed operation.
    All,
}

impl Mix {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mix::Subsets => "subsets",
            Mix::All => "all",
        }
    }
}

/// What rounds may contain: the hunt's `--ops`, `--nodes`, `--round-size` and `--mix`,
/// narrowed while shrinking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// Operations to draw from (sorted, not empty).
    pub ops: Vec<Op>,
    /// Node indices to send sequences to (sorted, not empty).
    pub nodes: Vec<usize>,
    /// Sequences per round.
    pub size: usize,
    /// Whether a round mixes all of `ops` or a subset.
    pub mix: Mix,
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
/// (a `leave` below becomes a `join` when allowed; a `join` above becomes a `leave`, or is
/// dropped when leaving is not allowed), and take only clients the round started with (room
/// operations without one become a `join` when allowed, else are dropped).
pub fn round(seed: u64, round: u64, filter: &Filter, held: HeldBounds) -> Vec<Step> {
    let mut rng = round_rng(seed, round);
    let allowed: Vec<Op> = filter.ops.iter().copied().filter(|op| held.target > 0 || !op.holds()).collect();
    let ops = match filter.mix {
        Mix::All => allowed,
        Mix::Subsets => subset(&mut rng, &allowed),
    };
    let total_weight: u32 = ops.iter().map(|op| op.info().weight).sum();
    if ops.is_empty() || filter.nodes.is_empty() || total_weight == 0 {
        return Vec::new();
    }
    let mut pool = Pool { size: held.now, takeable: held.now };
    let mut steps = Vec::with_capacity(filter.size);
    for _ in 0..filter.size {
        let drawn = draw(&mut rng, &ops, total_weight);
        let node = filter.nodes[rng.random_range(0..filter.nodes.len())];
        let pick = rng.random();
        let Some(op) = steer(drawn, pool, held, &ops) else {
            continue;
        };
        pool.apply(op);
        steps.push(Step { op, node, pick });
    }
    steps
}

/// The held pool as a round's plan sees it. The steps of a round run at once, so a client
/// that joins in a round can only be taken (to leave) in a later one.
#[derive(Debug, Clone, Copy)]
struct Pool {
    /// Held clients once the steps so far are done.
    size: usize,
    /// Clients from before the round that no earlier step takes.
    takeable: usize,
}

impl Pool {
    fn apply(&mut self, op: Op) {
        if op.adds() {
            self.size += 1;
        }
        if op.takes() {
            self.takeable -= 1;
        }
        if op == Op::Leave {
            self.size -= 1;
        }
    }
}

/// The operations of a [`Mix::Subsets`] round: all of them one time in four, else one to
/// three kinds drawn by weight, the held-client operations counting as one kind.
fn subset(rng: &mut ChaCha8Rng, allowed: &[Op]) -> Vec<Op> {
    if rng.random_range(0..4) == 0 {
        return allowed.to_vec();
    }
    let mut groups: Vec<Vec<Op>> = allowed.iter().filter(|op| !op.holds()).map(|&op| vec![op]).collect();
    let held: Vec<Op> = allowed.iter().copied().filter(|op| op.holds()).collect();
    if !held.is_empty() {
        groups.push(held);
    }
    let weight = |group: &Vec<Op>| group.iter().map(|op| op.info().weight).sum::<u32>();
    let mut chosen = Vec::new();
    for _ in 0..rng.random_range(1..=3usize).min(groups.len()) {
        let total: u32 = groups.iter().map(weight).sum();
        let mut ticket = rng.random_range(0..total.max(1));
        let index = groups
            .iter()
            .position(|group| {
                let hit = ticket < weight(group);
                ticket = ticket.saturating_sub(weight(group));
                hit
            })
            .unwrap_or(groups.len() - 1);
        chosen.extend(groups.swap_remove(index));
    }
    chosen.sort();
    chosen
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

/// Keeps the held pool within its bounds and takes only clients there are; `None`: drop the
/// step (nothing it could become).
fn steer(op: Op, pool: Pool, held: HeldBounds, allowed: &[Op]) -> Option<Op> {
    let can = |op: Op| allowed.contains(&op);
    let leave_or_join = |op: Op| {
        if pool.takeable > 0 && pool.size > held.low() {
            Some(op)
        } else {
            (pool.size <= held.low() && can(Op::Join)).then_some(Op::Join)
        }
    };
    match op {
        Op::Leave | Op::Reconnect => leave_or_join(op),
        Op::RoomJoin | Op::RoomLeave if pool.takeable == 0 => {
            (pool.size < held.high() && can(Op::Join)).then_some(Op::Join)
        }
        op if op.adds() && pool.size >= held.high() => {
            (can(Op::Leave) && pool.takeable > 0).then_some(Op::Leave)
        }
        other => Some(other),
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
        Filter { ops: Op::all(), nodes: vec![0, 1, 2], size, mix: Mix::All }
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
        let narrow = Filter {
            ops: vec![Op::WsAckHangup, Op::PollConnectDrop],
            nodes: vec![2],
            size: 50,
            mix: Mix::All,
        };
        let steps = round(1, 0, &narrow, HELD);
        assert!(steps.iter().all(|step| narrow.ops.contains(&step.op) && step.node == 2));
    }

    #[test]
    fn the_held_pool_stays_within_its_bounds() {
        let only_held = Filter {
            ops: Op::all().into_iter().filter(|op| op.holds()).collect(),
            nodes: vec![0],
            size: 500,
            mix: Mix::All,
        };
        for seed in 0..20 {
            let mut pool = 20i64;
            for step in round(seed, 0, &only_held, HELD) {
                pool += match step.op {
                    Op::Join | Op::JoinRoom => 1,
                    Op::Leave => -1,
                    _ => 0,
                };
                assert!((10..=30).contains(&pool), "seed {seed}: pool {pool}");
            }
        }
        let no_pool = round(3, 0, &everything(300), HeldBounds { now: 0, target: 0 });
        assert!(no_pool.iter().all(|step| !step.op.holds()), "--held 0 plans no held-pool steps");
        let leaves_only = Filter { ops: vec![Op::Leave], nodes: vec![0], size: 5, mix: Mix::All };
        let steps = round(3, 0, &leaves_only, HeldBounds { now: 14, target: 20 });
        assert_eq!(steps.len(), 4, "leaves down to the low bound (10), then nothing to steer to");
        assert!(steps.iter().all(|step| step.op == Op::Leave));
        let joins_only = Filter { ops: vec![Op::Join], ..leaves_only };
        let steps = round(3, 0, &joins_only, HeldBounds { now: 25, target: 20 });
        assert_eq!(steps.len(), 5, "below the bound: joins");
        assert!(round(3, 0, &joins_only, HELD_FULL).is_empty(), "at the bound, nothing to steer to: dropped");
    }

    const HELD_FULL: HeldBounds = HeldBounds { now: 30, target: 20 };

    #[test]
    fn subset_rounds_mix_few_kinds_and_keep_the_held_operations_together() {
        let filter = Filter { mix: Mix::Subsets, ..everything(300) };
        let (mut everything_rounds, mut narrow_rounds) = (0, 0);
        for number in 0..200 {
            let steps = round(5, number, &filter, HELD);
            let kinds: Vec<Op> = census(&steps).into_iter().map(|(op, _)| op).collect();
            let non_held = kinds.iter().filter(|op| !op.holds()).count();
            let held = kinds.iter().filter(|op| op.holds()).count();
            if non_held + usize::from(held > 0) <= 3 {
                narrow_rounds += 1;
                assert!(held == 0 || steps.iter().filter(|s| s.op.holds()).count() >= 3, "{kinds:?}");
            } else {
                everything_rounds += 1;
            }
        }
        assert!(
            (30..=70).contains(&everything_rounds),
            "about a quarter mix everything: {everything_rounds}"
        );
        assert_eq!(everything_rounds + narrow_rounds, 200);
        assert_eq!(round(5, 9, &filter, HELD), round(5, 9, &filter, HELD));
    }

    #[test]
    fn a_round_takes_only_the_clients_it_started_with() {
        let churn = Filter {
            ops: Op::all().into_iter().filter(|op| op.holds()).collect(),
            nodes: vec![0],
            size: 400,
            mix: Mix::All,
        };
        for now in [0, 3, 12] {
            let steps = round(8, 1, &churn, HeldBounds { now, target: 20 });
            let taken = steps.iter().filter(|step| step.op.takes()).count();
            assert!(taken <= now, "{taken} clients taken of {now}");
            assert!(steps.iter().any(|step| step.op.adds()));
        }
        let rooms_only = Filter { ops: vec![Op::RoomJoin, Op::RoomLeave], ..churn };
        let steps = round(8, 1, &rooms_only, HeldBounds { now: 5, target: 20 });
        assert_eq!(steps.len(), 5, "room operations on the 5 clients there are, the rest dropped");
    }

    #[test]
    fn census_counts_in_table_order() {
        let step = |op| Step { op, node: 0, pick: 0 };
        let steps = [step(Op::Leave), step(Op::WsAckHangup), step(Op::Leave)];
        assert_eq!(census(&steps), vec![(Op::WsAckHangup, 1), (Op::Leave, 2)]);
    }
}
