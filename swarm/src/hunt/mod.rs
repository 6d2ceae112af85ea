//! `rollcall swarm --scenario hunt`: a drift hunter. It runs rounds of racy connection and
//! room sequences (a seeded, replayable random interleaving of the [`ops::OPS`] table) against
//! the nodes, and after each round waits until every node's `/api/presence` and `/api/rooms`,
//! and every held client's `refresh users` and `room users`, show the truth it knows. A round
//! that does not settle is a drift: recorded, added to the truth (a leak is permanent), and
//! later shrunk to a smaller failing round. Optional CPU burners make the machine busy, as in
//! production.

mod args;
mod burners;
mod expect;
mod held;
mod ops;
mod plan;
mod polling;
mod raw;
mod raw_rooms;
mod report;
mod round;
mod settle;
mod shrink;
mod text;

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::bail;

pub use args::HuntArgs;
use burners::Burners;
pub use burners::burn;
use held::HeldPool;
use ops::Op;
use plan::{Filter, HeldBounds, Step};
use report::{Drift, Findings, HuntReport, Setup};
use round::Executor;
use settle::{Expectation, Nodes};
use shrink::{Budget, Failing};

use crate::SwarmArgs;
use crate::messages::now_us;
use crate::net;
use crate::report::Ending;
use crate::room_api::RoomApi;
use crate::rooms::{Distribution, RoomPlan};

/// How far apart the two looks are that must agree before the hunt takes its baseline.
const BASELINE_GAP: Duration = Duration::from_millis(300);
/// How long the held clients get to leave at the end.
const LEAVE_ALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Burners outlive the hunt's own bound by this much at most (they are killed before).
const BURNER_SLACK: Duration = Duration::from_secs(30);
/// Rooms the room sequences share when `--rooms` does not say: few, so they collide.
const DEFAULT_ROOMS: u32 = 6;

/// Runs a hunt and returns its report (partial after Ctrl-C or `--max-duration`).
pub async fn run(args: &SwarmArgs) -> anyhow::Result<HuntReport> {
    let filter = args::filter(args).map_err(crate::usage)?;
    net::raise_file_limit();
    let targets = net::resolve_targets(&args.urls).await?;
    let sources = match &args.source_ips {
        Some(spec) => net::parse_source_ips(spec)?,
        None => net::default_source_ips(&targets),
    };
    let seed = args.seed.unwrap_or_else(crate::clock_seed);
    let rooms = room_plan(args, seed);
    let setup = Setup {
        urls: args.urls.clone(),
        seed,
        held: args.hunt.held,
        burners: args.hunt.burners,
        room_prefix: rooms.prefix.clone(),
    };
    eprintln!("rollcall swarm: hunt seed {seed} (--seed {seed} replays it), rooms {}0..", rooms.prefix);
    let presence_urls = targets.iter().map(|target| target.presence_url.clone()).collect();
    let nodes = Nodes::new(presence_urls, RoomApi::new(&targets)?, rooms.prefix.clone())?;
    let executor = Executor::new(targets, sources, args.connect_timeout, args.hunt.concurrency, rooms)?;
    let started = Instant::now();
    let mut burners = Burners::spawn(args.hunt.burners, args.max_duration + BURNER_SLACK)?;
    if args.hunt.burners > 0 {
        eprintln!("rollcall swarm: {} CPU burner(s), pids {:?}", args.hunt.burners, burners.pids());
    }
    let mut hunt = Hunt {
        args,
        filter,
        seed,
        nodes,
        executor,
        pool: HeldPool::default(),
        findings: Findings::default(),
        started,
    };
    let ending = tokio::select! {
        result = hunt.drive() => match result {
            Ok(()) => Ending::Completed,
            Err(error) => Ending::Failed(format!("{error:#}")),
        },
        _ = tokio::signal::ctrl_c() => Ending::Interrupted,
        () = tokio::time::sleep(args.max_duration) => Ending::TimedOut,
    };
    burners.stop().await;
    hunt.pool.reap();
    hunt.findings.held_at_end = hunt.pool.len();
    let _ = tokio::time::timeout(LEAVE_ALL_TIMEOUT, hunt.pool.leave_all()).await;
    hunt.findings.held_dropped = std::mem::take(&mut hunt.pool.dropped);
    Ok(HuntReport::build(&setup, hunt.findings, &ending, started.elapsed()))
}

/// The hunt's rooms: `--rooms` (or a few) under `--room-prefix`, by default a prefix new to
/// this hunt, so that counts left by earlier runs are not in its way.
fn room_plan(args: &SwarmArgs, seed: u64) -> RoomPlan {
    RoomPlan {
        count: if args.rooms > 0 { args.rooms } else { DEFAULT_ROOMS },
        distribution: Distribution::Uniform,
        zipf_s: 0.0,
        prefix: args.room_prefix.clone().unwrap_or_else(|| format!("hunt-{:x}-", now_us())),
        seed,
    }
}

/// Prints the report on stdout: one JSON object, or the text summary.
pub fn print(report: &HuntReport, json: bool) -> anyhow::Result<()> {
    let text = if json { format!("{}\n", serde_json::to_string(report)?) } else { text::text(report) };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// A running hunt.
struct Hunt<'a> {
    args: &'a SwarmArgs,
    filter: Filter,
    seed: u64,
    nodes: Nodes,
    executor: Executor,
    pool: HeldPool,
    findings: Findings,
    started: Instant,
}

impl Hunt<'_> {
    /// Baseline, warm-up, rounds until a bound, then shrinking of the first drift.
    async fn drive(&mut self) -> anyhow::Result<()> {
        self.findings.node_ids = self.distinct_node_ids().await?;
        let settle_timeout = self.args.settle_timeout;
        let mut expectation = self.nodes.baseline(&mut self.pool, BASELINE_GAP, settle_timeout).await?;
        let warm_up: Vec<Step> = (0..self.args.hunt.held)
            .map(|index| Step {
                op: Op::Join,
                node: self.filter.nodes[index % self.filter.nodes.len()],
                pick: 0,
            })
            .collect();
        self.round(None, &warm_up, &mut expectation).await;
        let mut round = 0;
        while let Some(size) = self.next_round_size(round) {
            let filter = Filter { size, ..self.filter.clone() };
            let steps = plan::round(self.seed, round, &filter, self.held_bounds());
            if !self.round(Some(round), &steps, &mut expectation).await {
                self.findings.failing(Failing { filter, seed: self.seed, round, steps });
            }
            round += 1;
        }
        if let Some(failing) = self.findings.narrowest_failing.clone()
            && self.args.hunt.shrink_trials > 0
        {
            self.shrink(failing, &mut expectation).await;
        }
        Ok(())
    }

    /// Looks for a smaller round that fails like `failing`, within `--shrink-trials`.
    async fn shrink(&mut self, failing: Failing, expectation: &mut Expectation) {
        let trials = self.args.hunt.shrink_trials;
        let tries = shrink::tries_for(self.rounds_per_drift(&failing.steps), trials);
        eprintln!(
            "rollcall swarm: shrinking round {} ({trials} trial rounds at most, {tries} per narrower filter)",
            failing.round
        );
        let trial = async |filter: &Filter, seed: u64| self.trial(filter, seed, expectation).await;
        let shrunk = shrink::shrink(failing, Budget { tries, trials }, trial).await;
        self.findings.shrunk = Some(shrunk);
    }

    /// Hunt rounds per drift of the likeliest kind among `steps`.
    fn rounds_per_drift(&self, steps: &[Step]) -> f64 {
        let per_kind = &self.findings.tally.per_kind;
        let ratios = plan::census(steps).into_iter().filter_map(|(op, _)| per_kind.get(&op));
        ratios
            .map(|count| count.rounds as f64 / count.drift_rounds.max(1) as f64)
            .fold(f64::INFINITY, f64::min)
    }

    /// Every URL's node id; two URLs of one node would double its expected sockets.
    async fn distinct_node_ids(&self) -> anyhow::Result<Vec<String>> {
        let ids = self.nodes.ids().await?;
        for (index, id) in ids.iter().enumerate() {
            if ids[..index].contains(id) {
                bail!("two --urls reach node {id:?}: the hunt needs one URL per node (not a load balancer)");
            }
        }
        Ok(ids)
    }

    /// The size of round `round`, or `None` when a bound has been reached.
    fn next_round_size(&self, round: u64) -> Option<usize> {
        let hunt = &self.args.hunt;
        if hunt.rounds.is_some_and(|rounds| round >= rounds) || self.started.elapsed() >= self.args.duration {
            return None;
        }
        let done = self.findings.tally.sequences();
        match hunt.sequences {
            Some(limit) if done >= limit => None,
            Some(limit) => Some(hunt.round_size.min((limit - done) as usize)),
            None => Some(hunt.round_size),
        }
    }

    fn held_bounds(&self) -> HeldBounds {
        HeldBounds { now: self.pool.len(), target: self.args.hunt.held }
    }

    /// Runs one round and waits for the truth; records a drift and returns false when the
    /// nodes do not settle.
    async fn round(&mut self, round: Option<u64>, steps: &[Step], expectation: &mut Expectation) -> bool {
        self.executor.run(steps, &mut self.pool, &mut self.findings.tally).await;
        if round.is_some() {
            self.findings.rounds += 1;
        }
        let verdict = self.nodes.settle(&mut self.pool, expectation, self.args.settle_timeout).await;
        if round.is_some() {
            self.findings.tally.round_of(steps, !verdict.settled());
        }
        if verdict.settled() {
            return true;
        }
        let after = (self.findings.tally.sequences(), self.started.elapsed());
        let drift = Drift::new(round, steps, &verdict, after);
        eprintln!("rollcall swarm: DRIFT {}", serde_json::to_string(&drift).unwrap_or_default());
        self.findings.drift(drift);
        expectation.rebaseline(&verdict);
        false
    }

    /// One shrinking trial: round 0 of `seed` under `filter`; its steps when it drifted.
    async fn trial(
        &mut self,
        filter: &Filter,
        seed: u64,
        expectation: &mut Expectation,
    ) -> Option<Vec<Step>> {
        let steps = plan::round(seed, 0, filter, self.held_bounds());
        self.executor.run(&steps, &mut self.pool, &mut self.findings.tally).await;
        let verdict = self.nodes.settle(&mut self.pool, expectation, self.args.settle_timeout).await;
        if verdict.settled() {
            return None;
        }
        expectation.rebaseline(&verdict);
        Some(steps)
    }
}
