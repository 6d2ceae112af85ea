//! The command line: `rollcall serve`, `rollcall healthcheck` (and `rollcall swarm`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use rollcall_node::config::{self, Overrides};
use rollcall_node::startup::App;
use rollcall_node::{shutdown, telemetry};

/// rollcall: one exact live user count across a cluster of Socket.IO nodes.
#[derive(Debug, Parser)]
#[command(name = "rollcall", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (standalone without a Redis URL, clustered with one).
    Serve(ServeArgs),
    /// Exit 0 if a node answers its health check (for container HEALTHCHECKs).
    Healthcheck(HealthcheckArgs),
    /// Load-test nodes with many Socket.IO clients and report connect latency and convergence.
    // Boxed: the swarm's many flags would make every `Command` as large as they are.
    Swarm(Box<rollcall_swarm::SwarmArgs>),
}

/// Flags of `rollcall serve`; they override every other settings layer.
#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML file layered over the embedded defaults, under ROLLCALL_* env and flags.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    bind: Option<String>,
    /// TCP port.
    #[arg(long)]
    port: Option<u16>,
    /// Redis URL; without one the node runs standalone.
    #[arg(long)]
    redis_url: Option<String>,
    /// This node's id in the cluster.
    #[arg(long)]
    node_id: Option<String>,
}

#[derive(Debug, Args)]
struct HealthcheckArgs {
    /// Health URL to probe.
    #[arg(long, default_value = "http://127.0.0.1:3000/healthz")]
    url: String,
}

/// Runs the parsed command line; the result is the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Healthcheck(args) => healthcheck(&args.url),
        Command::Swarm(args) => swarm(*args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        config_file: args.config,
        bind: args.bind,
        port: args.port,
        redis_url: args.redis_url,
        node_id: args.node_id,
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = match config::load(&overrides, &env) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("rollcall: {error}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if settings.worker_threads > 0 {
        builder.worker_threads(settings.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rollcall: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let node_id = settings.node_id_or_default();
    let telemetry = {
        let _inside_runtime = runtime.enter();
        match telemetry::init(&settings, &node_id) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("rollcall: cannot start telemetry: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    let settings = config::Settings { node_id, ..settings };
    let result = runtime.block_on(async {
        let app = App::build(&settings).await?;
        app.run_until(shutdown::signal()).await
    });
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rollcall: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(url: &str) -> ExitCode {
    let ok = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| rt.block_on(rollcall_node::probe::http_ok(url)).ok())
        .unwrap_or(false);
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn swarm(args: rollcall_swarm::SwarmArgs) -> ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(rollcall_swarm::run(args)));
    result.unwrap_or_else(|error| {
        eprintln!("rollcall swarm: {error:#}");
        if error.is::<rollcall_swarm::UsageError>() { ExitCode::from(2) } else { ExitCode::FAILURE }
    })
}
