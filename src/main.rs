//! The `forgehand` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    forgehand::cli::run(forgehand::cli::Cli::parse()).await
}
