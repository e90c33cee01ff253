//! `loophole-node`: parses the command line and runs it (see the library for everything else).
//!
//! Thread: Main thread.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = loophole_node::cli::Cli::parse();
    loophole_node::init_tracing();
    match loophole_node::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("loophole: {err:#}");
            ExitCode::from(loophole_node::exit_code(&err))
        }
    }
}
