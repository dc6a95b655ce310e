//! The `upid` command-line client of the collector's query API.
//!
//! - [`args`]: the command line (clap).
//! - [`connect`]: URL, TLS, token, timeouts; gRPC failures read into
//!   [`CliError`]s that say what to do ([`error`]), helped by [`probe`]
//!   (what protocol a port speaks).
//! - [`view`]: the API's answers as flat, unit-named records (what JSON and
//!   YAML print); [`render`] and [`units`]: pure text rendering;
//!   [`time_arg`]: `--since`/`--until` values.
//! - [`doctor`]: the step-by-step connection check.
//!
//! [`run`] executes a parsed command and returns what to print; the binary
//! only parses, prints and exits.

pub mod args;
mod commands;
pub mod completion;
pub mod connect;
pub mod doctor;
pub mod error;
pub mod probe;
pub mod render;
#[cfg(test)]
mod scripted_collector;
pub mod time_arg;
pub mod units;
pub mod view;

use std::ffi::OsString;

pub use args::Cli;
pub use error::CliError;

use args::{Command, DescribeWhat, GetWhat, UpdatesWhat};
use commands::Session;
use connect::Settings;

/// What a command wants printed, and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// For stdout: the result.
    pub stdout: String,
    /// For stderr: hints (e.g. why a listing is empty).
    pub stderr: String,
    /// False when the command ran but found a problem (`doctor`).
    pub success: bool,
}

impl Output {
    /// A successful result printing `stdout`.
    pub fn ok(stdout: String) -> Self {
        Output {
            stdout,
            stderr: String::new(),
            success: true,
        }
    }
}

/// Runs a parsed command line. `ssl_cert_file` is `$SSL_CERT_FILE`, where
/// https without `--ca` looks for the system CA bundle first.
pub async fn run(cli: Cli, ssl_cert_file: Option<OsString>) -> Result<Output, CliError> {
    let format = cli.output;
    let connect = &cli.connect;
    match cli.command {
        Command::Completion { shell } => Ok(Output::ok(completion::script(shell))),
        // Offline: never connects to the collector.
        Command::Updates {
            what: Some(UpdatesWhat::Decide(a)),
            ..
        } => commands::updates::decide(&a, format, doctor::now_unix_ns()),
        Command::Updates { what: None, list } => {
            session(connect, ssl_cert_file)
                .await?
                .updates(&list, format)
                .await
        }
        Command::Updates {
            what: Some(UpdatesWhat::Apply(a)),
            ..
        } => {
            session(connect, ssl_cert_file)
                .await?
                .apply_update(&a, format)
                .await
        }
        Command::Updates {
            what: Some(UpdatesWhat::Events(a)),
            ..
        } => {
            session(connect, ssl_cert_file)
                .await?
                .update_events(&a, format)
                .await
        }
        Command::Updates {
            what: Some(UpdatesWhat::Rollouts(a)),
            ..
        } => {
            session(connect, ssl_cert_file)
                .await?
                .rollouts(&a, format)
                .await
        }
        Command::Export(a) => {
            // A bad range is the user's to fix: say so before connecting.
            let range = commands::export::export_range(&a, doctor::now_unix_ns())?;
            session(connect, ssl_cert_file)
                .await?
                .export(&a, range, format)
                .await
        }
        Command::Doctor => {
            let report = doctor::run(connect, ssl_cert_file).await;
            let mut out = Output::ok(doctor::report::render(&report, format)?);
            out.success = report.ok;
            Ok(out)
        }
        Command::Get {
            what: GetWhat::Nodes,
        } => session(connect, ssl_cert_file).await?.nodes(format).await,
        Command::Get {
            what: GetWhat::Containers(a),
        } => {
            session(connect, ssl_cert_file)
                .await?
                .containers(&a, format)
                .await
        }
        Command::Get {
            what: GetWhat::Workloads(a),
        } => {
            session(connect, ssl_cert_file)
                .await?
                .workloads(&a, format)
                .await
        }
        Command::Top(a) => session(connect, ssl_cert_file).await?.top(&a, format).await,
        Command::Events(a) => {
            // A bad range is the user's to fix: say so before connecting.
            let range = commands::event_range(&a, doctor::now_unix_ns())?;
            session(connect, ssl_cert_file)
                .await?
                .events(&a, range, format)
                .await
        }
        Command::Rightsize(a) => {
            session(connect, ssl_cert_file)
                .await?
                .rightsize(&a, format)
                .await
        }
        Command::Idle(a) => {
            session(connect, ssl_cert_file)
                .await?
                .idle(&a, format)
                .await
        }
        Command::Cost(a) => {
            session(connect, ssl_cert_file)
                .await?
                .cost(&a, format)
                .await
        }
        Command::Analyze { what } => {
            session(connect, ssl_cert_file)
                .await?
                .analyze(&what, format)
                .await
        }
        Command::Describe {
            what: DescribeWhat::Container(a),
        } => {
            session(connect, ssl_cert_file)
                .await?
                .describe(&a, format)
                .await
        }
    }
}

async fn session(
    args: &args::ConnectArgs,
    ssl_cert_file: Option<OsString>,
) -> Result<Session, CliError> {
    Session::open(Settings::from_args(args, ssl_cert_file)?).await
}
