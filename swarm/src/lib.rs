//! `rollcall swarm`: a load tester that opens many Socket.IO clients against one or more
//! nodes (or a load balancer), runs a scenario (`burst`, `hold`, `churn`, `move`) and reports
//! connect latency and rate, errors, `refresh users` traffic and convergence. With `--rooms`
//! every client joins a room at connect (uniform or Zipf), `move` moves clients between rooms
//! by `leave` / `join` events, and convergence is judged per room too. The `hunt` scenario
//! is a drift hunter instead: rounds of racy connection and room sequences, each followed by
//! a check that every node still shows the exact counts.
//!
//! The parent process spreads its clients over worker processes (this same binary,
//! re-executed with a hidden flag; JSON lines over the worker's stdin and stdout) so that no
//! process needs more than ~15,000 open files, and binds client sockets to many loopback
//! source addresses so that no destination runs out of ephemeral ports.

mod client;
mod fleet;
mod histogram;
mod hunt;
mod messages;
mod mover;
mod net;
mod pool;
#[cfg(test)]
mod pool_tests;
mod progress;
mod protocol;
mod render;
mod report;
mod room_api;
mod room_args;
mod room_check;
mod room_report;
mod room_wire;
mod rooms;
mod scenario;
mod truth;
mod worker;

use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;

pub use hunt::HuntArgs;
pub use rooms::Distribution;

/// Exit codes, shown at the end of `rollcall swarm --help`.
const EXIT_CODES: &str = "\
Exit codes:
  0    every client connected, none was dropped, and all saw the true total (stale = 0);
       with --rooms also every room converged, every move was acknowledged, and every
       room's count was what was there before plus the swarm's clients
  1    stale > 0, stale rooms > 0, connect or move errors > 0, a client was dropped, a room
       count mismatch, or the run failed; hunt: a drift was found (or no sequence succeeded)
  124  --max-duration passed first (partial report)
  130  interrupted by Ctrl-C (partial report)";

/// What the swarm does with its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Connect all clients at --rate, wait until settled, disconnect all.
    Burst,
    /// Connect all clients, settle, hold them for --duration, disconnect all.
    Hold,
    /// Connect all clients, settle, then for --duration close and reopen --churn-rate clients
    /// per second; convergence is measured after the last reconnect.
    Churn,
    /// Connect all clients (each in a room: needs --rooms 2 or more), settle, then for
    /// --duration move --move-rate clients per second to another room (leave, then join, by
    /// event, acks checked); convergence is measured per room after the last move.
    Move,
    /// Hunt for drifts: rounds of racy connection sequences (seeded, replayable), after each
    /// of which every node must settle on the exact count; see the Hunt options.
    Hunt,
}

impl Scenario {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Burst => "burst",
            Scenario::Hold => "hold",
            Scenario::Churn => "churn",
            Scenario::Move => "move",
            Scenario::Hunt => "hunt",
        }
    }
}

/// Command-line arguments of `rollcall swarm`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXIT_CODES)]
pub struct SwarmArgs {
    /// Node or load balancer base URL (http://host:port); repeat for several nodes, used round
    /// robin. Each one's GET /api/presence is the true total; several must agree.
    #[arg(long = "url", value_name = "URL", required_unless_present_any = ["worker_of", "burner_of"])]
    pub urls: Vec<String>,
    /// Clients to connect.
    #[arg(long, default_value_t = 1000)]
    pub clients: u64,
    /// Connects per second, over all workers (0: as fast as possible).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Scenario to run.
    #[arg(long, value_enum, default_value_t = Scenario::Burst)]
    pub scenario: Scenario,
    /// How long to hold (hold), to churn (churn) or to hunt (hunt): 500ms, 30s, 5m, 1h.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Clients closed and reopened per second during churn.
    #[arg(long, default_value_t = 100.0)]
    pub churn_rate: f64,
    /// Rooms to spread the clients over (0: none). Each client joins one at connect (query
    /// `room=<prefix><k>`) and records the last `room users` of its room. Hunt: the rooms its
    /// room sequences share [hunt default: 6].
    #[arg(long, default_value_t = 0)]
    pub rooms: u32,
    /// How clients are spread over the rooms: zipf (room k gets a share ∝ 1/(k+1)^s, so
    /// `<prefix>0` is the largest) or uniform.
    #[arg(long, value_enum, default_value_t = Distribution::Zipf)]
    pub room_distribution: Distribution,
    /// The Zipf exponent s (0: uniform; 1: the largest of 2,000 rooms holds 12 % of the clients).
    #[arg(long, default_value_t = 1.0)]
    pub zipf_s: f64,
    /// Room names are <prefix><k> [default: room-; hunt: hunt-<hex>-, new for every hunt].
    #[arg(long, value_name = "PREFIX")]
    pub room_prefix: Option<String>,
    /// Clients moved to another room per second during --scenario move.
    #[arg(long, default_value_t = 100.0)]
    pub move_rate: f64,
    /// Seed of the random choices (rooms drawn and moved to; the hunt's interleavings)
    /// [default: from the clock]; in the report, and replays a run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sign every client in as its own user `swarm-<k>`: an HS256 token made with this secret
    /// (a node's `jwt_secret`) goes in the handshake's `auth`, so nodes with `auth` on count
    /// users and produce `member.joined` / `member.left` webhooks for the swarm's moves.
    #[arg(long, value_name = "SECRET")]
    pub jwt_secret: Option<String>,
    /// Worker processes [default: one per 15,000 clients, within the open-files limit].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Source addresses for client sockets: comma-separated IPs and IPv4 ranges A-B
    /// [default: 127.0.0.2-127.0.0.250 when every URL is IPv4 loopback, else the kernel's].
    #[arg(long, value_name = "LIST")]
    pub source_ips: Option<String>,
    /// How long every connected client may take to see the true total after the last change.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub settle_timeout: Duration,
    /// How long one client may take to connect.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Bound on the whole run: past it the swarm stops with a partial report.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub max_duration: Duration,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Internal: run as a worker of this parent process id.
    #[arg(long = "worker-of", hide = true, value_name = "PID")]
    pub worker_of: Option<u32>,
    /// The hunt scenario's flags (boxed: the other scenarios do not need them).
    #[command(flatten)]
    pub hunt: Box<HuntArgs>,
}

/// Runs the swarm (or a worker, when the hidden worker flags are set). Returns the process exit code.
pub async fn run(args: SwarmArgs) -> anyhow::Result<ExitCode> {
    if args.worker_of.is_some() {
        worker::run().await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(parent) = args.hunt.burner_of {
        tokio::task::spawn_blocking(move || hunt::burn(parent, args.max_duration)).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.scenario == Scenario::Hunt {
        let report = hunt::run(&args).await?;
        hunt::print(&report, args.json)?;
        return Ok(ExitCode::from(report.exit_code));
    }
    let report = scenario::run(&args).await?;
    render::print(&report, args.json)?;
    Ok(ExitCode::from(report.exit_code))
}

/// Flags that do not make a run (exit status 2, like any command-line error); anything else
/// that stops a run is a failure (1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Marks a flag check's error as a [`UsageError`].
fn usage(error: anyhow::Error) -> anyhow::Error {
    UsageError(format!("{error:#}")).into()
}

/// A seed from the clock and the process id, for runs without `--seed`.
fn clock_seed() -> u64 {
    messages::now_us() ^ (u64::from(std::process::id()) << 40)
}

/// Parses `500ms`, `30s`, `5m`, `1h` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("bad duration {text:?}"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("bad duration {text:?}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
