//! `rollcall`: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    rollcall::cli::run(rollcall::cli::Cli::parse())
}
