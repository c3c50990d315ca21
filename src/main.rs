//! The `flint` binary: parses the command line and hands off to the crates.
//! Each role of the platform is a subcommand of this one binary.

mod cli;
mod dev;

use clap::Parser;

/// mimalloc instead of the system allocator: the gateway allocates and
/// frees small buffers on every request from several threads, where
/// glibc's malloc costs measurably more CPU per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
