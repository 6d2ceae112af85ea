//! The parent: starts the workers, drives a scenario through its phases, measures
//! convergence (of the total, and per room), and collects the workers' counters into one
//! [`Report`].

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::fleet::Fleet;
use super::messages::{Command, Event, PhaseDone, WorkerConfig, WorkerReport};
use super::net;
use super::progress::Progress;
use super::report::{Ending, Report, RunState, Settle};
use super::room_api::RoomApi;
use super::room_args::{room_plan, validate_rooms};
use super::room_check::RoomCheck;
use super::truth::Presence;
use super::{Scenario, SwarmArgs};

/// How often convergence is checked.
const POLL: Duration = Duration::from_millis(50);
/// How long the workers get to send their final counters.
const REPORT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the whole swarm and returns its report (partial after Ctrl-C or `--max-duration`).
pub async fn run(args: &SwarmArgs) -> anyhow::Result<Report> {
    validate(args).map_err(crate::usage)?;
    let started = Instant::now();
    let file_limit = net::raise_file_limit();
    let workers = net::choose_workers(args.clients, args.workers, file_limit)?;
    let targets = net::resolve_targets(&args.urls).await?;
    let source_ips = match &args.source_ips {
        Some(spec) => net::parse_source_ips(spec)?,
        None => net::default_source_ips(&targets),
    };
    let presence = Presence::new(targets.iter().map(|t| t.presence_url.clone()).collect())?;
    let plan = room_plan(args);
    let rooms = match &plan {
        Some(plan) => Some(
            RoomCheck::new(plan.clone(), RoomApi::new(&targets)?)
                .await
                .context("cannot read the rooms API (GET /api/rooms)")?,
        ),
        None => None,
    };
    let configs = (0..workers)
        .map(|index| WorkerConfig {
            index,
            workers,
            targets: targets.clone(),
            source_ips: net::ips_for_worker(&source_ips, index, workers),
            connect_timeout_ms: args.connect_timeout.as_millis() as u64,
            max_duration_ms: (args.max_duration + REPORT_TIMEOUT * 2).as_millis() as u64,
            rooms: plan.clone(),
            jwt_secret: args.jwt_secret.clone(),
        })
        .collect();
    let mut fleet = Fleet::spawn(configs, Progress::new(args.clients)).await?;
    let mut state = RunState { room_plan: plan, ..RunState::default() };
    let checks = Checks { presence: &presence, rooms: rooms.as_ref() };
    let ending = tokio::select! {
        result = drive(args, &mut fleet, &checks, &mut state) => match result {
            Ok(()) => Ending::Completed,
            Err(error) => Ending::Failed(format!("{error:#}")),
        },
        _ = tokio::signal::ctrl_c() => Ending::Interrupted,
        () = tokio::time::sleep(args.max_duration) => Ending::TimedOut,
    };
    fleet.progress().phase("collecting reports");
    let reports = collect(&mut fleet).await;
    fleet.progress().finish();
    fleet.shutdown().await;
    Ok(Report::build(args, workers, state, &reports, ending, started.elapsed()))
}

fn validate(args: &SwarmArgs) -> anyhow::Result<()> {
    if args.urls.is_empty() {
        bail!("give at least one --url");
    }
    if !args.rate.is_finite() || args.rate < 0.0 {
        bail!("--rate must be a number of connects per second (0: unlimited)");
    }
    if args.scenario == Scenario::Churn && !(args.churn_rate.is_finite() && args.churn_rate > 0.0) {
        bail!("--churn-rate must be above 0 for the churn scenario");
    }
    validate_rooms(args)
}

/// Where the truth comes from: `/api/presence`, and the rooms API when the run has rooms.
struct Checks<'a> {
    presence: &'a Presence,
    rooms: Option<&'a RoomCheck>,
}

/// The scenario's phases in order; `state` keeps what was measured so far.
async fn drive(
    args: &SwarmArgs,
    fleet: &mut Fleet,
    checks: &Checks<'_>,
    state: &mut RunState,
) -> anyhow::Result<()> {
    let presence = checks.presence;
    state.baseline_users = presence.truth().await.value();
    let shares = net::split(args.clients, fleet.len());
    fleet.progress().phase("connecting");
    let connects =
        shares.iter().map(|&count| Command::Connect { count, rate: share_of(args, args.rate, count) });
    let connects = connects.collect();
    state.connect = Some(phase(fleet, connects).await?);
    let since = state.connect.map(|done| done.last_change_us).unwrap_or(0);
    fleet.progress().phase("settling");
    settle(fleet, checks, state, since, args.settle_timeout).await?;
    match args.scenario {
        Scenario::Burst => {}
        Scenario::Hold => {
            fleet.progress().phase("holding");
            fleet.idle(args.duration).await;
        }
        Scenario::Churn => churn(args, fleet, checks, state, &shares).await?,
        Scenario::Move => moves(args, fleet, checks, state, &shares).await?,
        Scenario::Hunt => bail!("the hunt scenario does not run on workers"),
    }
    fleet.progress().phase("disconnecting");
    let leaves = shares.iter().map(|_| Command::Disconnect { count: u64::MAX }).collect();
    phase(fleet, leaves).await?;
    state.final_users = drain(presence, state.baseline_users, args.settle_timeout).await;
    Ok(())
}

/// A worker's part of a per-second rate: in proportion to its share of the clients.
fn share_of(args: &SwarmArgs, total_per_second: f64, share: u64) -> f64 {
    total_per_second * share as f64 / args.clients.max(1) as f64
}

/// Churns for `--duration`, then measures convergence after the last reconnect.
async fn churn(
    args: &SwarmArgs,
    fleet: &mut Fleet,
    checks: &Checks<'_>,
    state: &mut RunState,
    shares: &[u64],
) -> anyhow::Result<()> {
    fleet.progress().phase("churning");
    let duration_ms = args.duration.as_millis() as u64;
    let churns = shares
        .iter()
        .map(|&share| Command::Churn { rate: share_of(args, args.churn_rate, share), duration_ms })
        .collect();
    let churned = phase(fleet, churns).await?;
    state.churn = Some(churned);
    fleet.progress().phase("settling");
    settle(fleet, checks, state, churned.last_change_us, args.settle_timeout).await
}

/// Moves clients between rooms for `--duration`, then measures convergence per room after the
/// last move (the total does not change: its convergence is measured from the last connect).
async fn moves(
    args: &SwarmArgs,
    fleet: &mut Fleet,
    checks: &Checks<'_>,
    state: &mut RunState,
    shares: &[u64],
) -> anyhow::Result<()> {
    fleet.progress().phase("moving");
    let duration_ms = args.duration.as_millis() as u64;
    let moves = shares
        .iter()
        .map(|&share| Command::Move { rate: share_of(args, args.move_rate, share), duration_ms })
        .collect();
    state.moves = Some(phase(fleet, moves).await?);
    let since = state.connect.map(|done| done.last_change_us).unwrap_or(0);
    fleet.progress().phase("settling");
    settle(fleet, checks, state, since, args.settle_timeout).await
}

/// Sends one phase command to each worker and merges their `PhaseDone` answers.
async fn phase(fleet: &mut Fleet, commands: Vec<Command>) -> anyhow::Result<PhaseDone> {
    fleet.send_each(commands).await?;
    let answers = fleet
        .gather(|event| match event {
            Event::PhaseDone(done) => Some(done),
            _ => None,
        })
        .await?;
    Ok(merge_phases(&answers))
}

/// Sums the counts; earliest start, latest success and latest change.
pub fn merge_phases(answers: &[PhaseDone]) -> PhaseDone {
    let starts = answers.iter().map(|done| done.first_start_us).filter(|&start| start > 0);
    PhaseDone {
        ok: answers.iter().map(|done| done.ok).sum(),
        failed: answers.iter().map(|done| done.failed).sum(),
        first_start_us: starts.min().unwrap_or(0),
        last_ok_us: answers.iter().map(|done| done.last_ok_us).max().unwrap_or(0),
        last_change_us: answers.iter().map(|done| done.last_change_us).max().unwrap_or(0),
    }
}

/// Polls until every connected client saw the agreed true total (and, with rooms, every room's
/// clients their room's: in two looks in a row, so a truth read just before a change landed
/// is not taken), or `timeout` passes; records the outcome in `state`.
async fn settle(
    fleet: &mut Fleet,
    checks: &Checks<'_>,
    state: &mut RunState,
    since_us: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let looks_needed = if checks.rooms.is_some() { 2 } else { 1 };
    let mut steady = 0;
    loop {
        let global = settle_look(fleet, checks.presence, since_us).await?;
        let rooms = match checks.rooms {
            Some(check) => Some(check.look(fleet).await?),
            None => None,
        };
        let rooms_converged = rooms.as_ref().is_none_or(|(_, verdict)| verdict.all_converged());
        steady = if global.converged && rooms_converged { steady + 1 } else { 0 };
        if steady >= looks_needed || Instant::now() >= deadline {
            let global = if global.converged { global } else { Settle { convergence_ms: None, ..global } };
            state.settle = Some(global);
            if let (Some(check), Some((look, verdict))) = (checks.rooms, rooms) {
                state.rooms = Some(check.finish(fleet, &look, &verdict).await?);
            }
            return Ok(());
        }
        fleet.idle(POLL).await;
    }
}

/// One look at the total: how many connected clients show the agreed truth.
async fn settle_look(fleet: &mut Fleet, presence: &Presence, since_us: u64) -> anyhow::Result<Settle> {
    let truth = presence.truth().await.value();
    fleet.broadcast(&Command::Status { truth }).await?;
    let statuses = fleet
        .gather(|event| match event {
            Event::Status(status) => Some(status),
            _ => None,
        })
        .await?;
    let connected: u64 = statuses.iter().map(|status| status.connected).sum();
    let matching: u64 = statuses.iter().map(|status| status.matching).sum();
    let without_value = statuses.iter().map(|status| status.without_value).sum();
    let latest = statuses.iter().map(|status| status.latest_change_us).max().unwrap_or(0);
    let converged = truth.is_some() && matching == connected;
    let convergence_us = latest.saturating_sub(since_us);
    Ok(Settle {
        converged,
        convergence_ms: Some(convergence_us as f64 / 1000.0),
        stale: connected - matching,
        stale_without_value: if converged { 0 } else { without_value },
        connected,
        truth,
    })
}

/// After the last disconnect: polls until the nodes agree on `baseline` again (or `timeout`);
/// returns the last agreed total.
async fn drain(presence: &Presence, baseline: Option<i64>, timeout: Duration) -> Option<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let total = presence.truth().await.value();
        if total == baseline || Instant::now() >= deadline {
            return total;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Asks every worker for its counters; whatever cannot be had in time is left out.
async fn collect(fleet: &mut Fleet) -> Vec<WorkerReport> {
    let gather = async {
        fleet.broadcast(&Command::Report).await?;
        fleet
            .gather(|event| match event {
                Event::Report(report) => Some(report),
                _ => None,
            })
            .await
    };
    match tokio::time::timeout(REPORT_TIMEOUT, gather).await {
        Ok(Ok(reports)) => reports,
        Ok(Err(error)) => {
            eprintln!("rollcall swarm: workers sent no report: {error:#}");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}
