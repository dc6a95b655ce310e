//! `upid-collector`: parses arguments and runs the collector library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UPID_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = upid_collector::cli::Cli::parse();
    match upid_collector::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "upid-collector: error: {}",
                upid_collector::cli::error_chain(&e)
            );
            std::process::ExitCode::FAILURE
        }
    }
}
