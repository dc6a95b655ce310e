//! `upid`: the command-line client of the collector's query API.
//!
//! Parses the command line, runs it with [`upid::cli::run`], prints what it
//! returns, and exits non-zero on an error or a failed `doctor` check.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use upid::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; `Ok(false)` when it ran but found a problem.
fn run(cli: Cli) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let output = runtime.block_on(upid::cli::run(cli, std::env::var_os("SSL_CERT_FILE")))?;
    std::io::stderr()
        .write_all(output.stderr.as_bytes())
        .context("writing to stderr")?;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.stdout.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `upid get containers | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("writing to stdout")?,
    }
    Ok(output.success)
}
