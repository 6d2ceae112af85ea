//! The hunt's flags and the checks that turn them into the filter of its rounds.

use anyhow::{Context, bail};

use super::ops::{self, Op};
use super::plan::{Filter, Mix};
use crate::SwarmArgs;

/// The hunt's own flags (see `rollcall swarm --help`).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Hunt (--scenario hunt)")]
pub struct HuntArgs {
    /// Stop after this many sequences [default: only --duration bounds the hunt].
    #[arg(long)]
    pub sequences: Option<u64>,
    /// Stop after this many rounds.
    #[arg(long)]
    pub rounds: Option<u64>,
    /// Sequences per round; the nodes must settle after each round.
    #[arg(long, default_value_t = 100)]
    pub round_size: usize,
    /// Sequences in flight at once.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Clients that join and stay (the pool wanders between half and 1.5 times this).
    #[arg(long, default_value_t = 20)]
    pub held: usize,
    /// Operations to mix, comma-separated [default: all of them]: ws_connect_hangup,
    /// ws_connect_reset, ws_connect_close, ws_connect_close_frame, ws_ack_hangup, ws_ack_reset,
    /// ws_double_connect, ws_connect_disconnect_connect, ws_ack_leave, poll_connect_disconnect,
    /// poll_connect_disconnect_batched, poll_connect_drop, join, leave, reconnect, join_room,
    /// room_join, room_leave, room_connect_hangup, room_join_hangup, room_flood, room_invalid.
    #[arg(long, value_name = "LIST")]
    pub ops: Option<String>,
    /// How a round picks its operations: `subsets` (a quarter of the rounds mix all of them,
    /// the others one to three kinds, so that drifts point at their kinds) or `all`.
    #[arg(long, value_enum, default_value_t = Mix::Subsets)]
    pub mix: Mix,
    /// Nodes that get sequences: 0-based indices in --url order, comma-separated [default: all].
    #[arg(long, value_name = "LIST")]
    pub nodes: Option<String>,
    /// CPU burners (busy-loop processes at normal priority) to run for the hunt's duration.
    #[arg(long, default_value_t = 0)]
    pub burners: usize,
    /// Trial rounds spent shrinking the first drift to a smaller failing round (0: none).
    #[arg(long, default_value_t = 30)]
    pub shrink_trials: u32,
    /// Internal: run as a CPU burner of this parent process id.
    #[arg(long = "burner-of", hide = true, value_name = "PID")]
    pub burner_of: Option<u32>,
}

/// Largest `--concurrency` and `--held`: far below the 20,000 open files of one process.
const MOST_SOCKETS: usize = 5_000;

/// Checks the hunt's flags and builds the filter of its rounds.
pub fn filter(args: &SwarmArgs) -> anyhow::Result<Filter> {
    let hunt = &args.hunt;
    if args.urls.is_empty() {
        bail!("give at least one --url");
    }
    if hunt.round_size == 0 || hunt.concurrency == 0 {
        bail!("--round-size and --concurrency must be at least 1");
    }
    crate::room_args::validate_room_names(args)?;
    if hunt.concurrency > MOST_SOCKETS || hunt.held > MOST_SOCKETS {
        bail!(
            "--concurrency and --held must stay at most {MOST_SOCKETS} (one process may open 20,000 files)"
        );
    }
    let ops = match &hunt.ops {
        Some(spec) => ops::parse_list(spec).map_err(anyhow::Error::msg).context("--ops")?,
        None => Op::all(),
    };
    let nodes = match &hunt.nodes {
        Some(spec) => parse_nodes(spec, args.urls.len()).context("--nodes")?,
        None => (0..args.urls.len()).collect(),
    };
    Ok(Filter { ops, nodes, size: hunt.round_size, mix: hunt.mix })
}

/// Parses `--nodes`: comma-separated indices below `count`, sorted, without repeats.
fn parse_nodes(spec: &str, count: usize) -> anyhow::Result<Vec<usize>> {
    let mut nodes = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let node: usize = item.parse().with_context(|| format!("{item:?} is not a node index"))?;
        if node >= count {
            bail!("node index {node} is out of range: there are {count} --url(s)");
        }
        nodes.push(node);
    }
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.is_empty() {
        bail!("names no node");
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_names_every_operation() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: SwarmArgs,
        }
        let help = Cli::command().render_long_help().to_string();
        for op in Op::all() {
            assert!(help.contains(op.name()), "--help does not name {op}");
        }
    }

    #[test]
    fn node_lists_are_indices_within_the_urls() {
        assert_eq!(parse_nodes("2, 0,2", 3).expect("valid"), vec![0, 2]);
        assert!(parse_nodes("3", 3).is_err());
        assert!(parse_nodes("a", 3).is_err());
        assert!(parse_nodes("", 3).is_err());
    }
}
