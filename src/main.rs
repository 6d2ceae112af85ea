//! `rollcall`: parse the command line and hand over to the node or the load tester.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::run(cli::Cli::parse())
}
