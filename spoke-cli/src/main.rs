//! `helix`: parse arguments, run the subcommand, exit with a code that means something
//! (see `helix --help`).

use std::process::ExitCode;

use clap::Parser;
use helix_spoke::{cli::Cli, commands::dispatch, exit::Exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("HELIX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report(&format!("starting the async runtime: {e}"));
            return ExitCode::from(Exit::Failed.code());
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            report(&e.to_string());
            ExitCode::from(e.exit().code())
        }
    }
}

#[allow(clippy::print_stderr)]
fn report(message: &str) {
    eprintln!("helix: error: {message}");
}
