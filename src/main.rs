//! The `flint` binary: parses the command line and hands off to the crates.
//! Each role of the platform is a subcommand of this one binary.

mod cli;
mod dev;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("flint: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
