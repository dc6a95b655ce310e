//! The `upid-collector` command line: `serve`, `standalone`, `import` and
//! `export`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{FileConfig, Mode, SamplingArgs, ServerArgs, Settings};

/// upid collector: stores what agents measure, exactly once, in DuckDB and
/// answers queries about it.
#[derive(Debug, Parser)]
#[command(name = "upid-collector", version, about)]
pub struct Cli {
    /// YAML config file (same settings as the flags, snake_case); flags and
    /// UPID_* variables override it.
    #[arg(long, global = true, env = "UPID_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The collector's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive agents' streams over gRPC and serve the query API.
    Serve {
        /// Server options.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Sample this host in-process as well: one process, one DuckDB file,
    /// listening on 127.0.0.1 only.
    Standalone {
        /// Server options.
        #[command(flatten)]
        server: ServerArgs,
        /// What to sample.
        #[command(flatten)]
        sampling: SamplingArgs,
    },
    /// Import usage history (Parquet, Prometheus) into the store; the
    /// collector must be stopped.
    Import {
        /// Where from.
        #[command(subcommand)]
        command: crate::import::ImportCommand,
    },
    /// Export usage from the store; the collector must be stopped.
    Export {
        /// In which format.
        #[command(subcommand)]
        command: crate::export::ExportCommand,
    },
}

/// Resolves the configuration and runs until SIGINT or SIGTERM.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let settings = match cli.command {
        Command::Serve { server } => Settings::resolve(Mode::Serve, &server, None, &file)?,
        Command::Standalone { server, sampling } => {
            Settings::resolve(Mode::Standalone, &server, Some(&sampling), &file)?
        }
        Command::Import { command } => return crate::import::run_cli(command, &file),
        Command::Export { command } => return crate::export::run_cli(command, &file),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("upid-collector")
        .build()
        .context("starting the async runtime")?;
    let store = settings.store.clone();
    runtime
        .block_on(crate::server::run(settings, stop_signal(), |ready| {
            println!("{ready}");
            tracing::info!(grpc = %ready.grpc, store = %ready.store.display(), "collector ready");
        }))
        .with_context(|| format!("collector with store {}", store.display()))
}

/// Completes on the first SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// An error and its causes on one line, `outer: inner: ...`, leaving out a
/// cause whose text the previous message already contains (many errors
/// here name their source in their own message).
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !previous.is_empty() && previous.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
        previous = text;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let inner = std::io::Error::other("Address already in use");
        let outer = anyhow::Error::new(std::io::Error::other(format!(
            "listening on 127.0.0.1:1: {inner}"
        )))
        .context("collector with store /x");
        assert_eq!(
            error_chain(&outer),
            "collector with store /x: listening on 127.0.0.1:1: Address already in use"
        );
    }
}
