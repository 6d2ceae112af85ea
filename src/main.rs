//! `rollcall`: parse the command line and hand over to the node or the load tester.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// A build with `--features jemalloc` allocates with jemalloc (tune it with `_RJEM_MALLOC_CONF`).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    cli::run(cli::Cli::parse())
}
