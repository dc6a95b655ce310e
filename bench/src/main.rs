//! `upid-bench`: benchmarks that measure upid's performance goals on real
//! kernels and real peers; results are recorded in `bench/RESULTS.md`.
//!
//! Each benchmark is a subcommand with its own module; this file only
//! parses arguments, installs the Ctrl-C handler and prints the result.

#![forbid(unsafe_code)]

mod agent;
mod agent_proc;
mod agent_tick;
#[cfg(feature = "store")]
mod analysis;
mod cgroups;
mod child;
#[cfg(feature = "store")]
mod collector;
#[cfg(feature = "store")]
mod collector_load;
#[cfg(feature = "store")]
mod collector_proc;
#[cfg(feature = "store")]
mod collector_prom;
#[cfg(feature = "store")]
mod collector_sim;
mod exporter;
mod file_costs;
mod interrupt;
mod machine;
mod procstat;
mod report;
mod stats;
#[cfg(feature = "store")]
mod store_sizes;
#[cfg(feature = "store")]
mod updates;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::interrupt::Interrupt;

/// upid benchmarks (run as root, in release mode).
#[derive(Debug, Parser)]
#[command(name = "upid-bench", version, about)]
struct Cli {
    /// Which benchmark to run.
    #[command(subcommand)]
    command: Command,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
enum Command {
    /// Issue #2: agent CPU per container per tick, CPU share and memory,
    /// with real cgroups, compared with prometheus-node-exporter.
    Agent(agent::AgentArgs),
    #[cfg(feature = "store")]
    /// Issue #3: collector ingest rate, ack latency and bytes per stored
    /// value, with simulated agents against a real `upid-collector serve`,
    /// compared with Prometheus's TSDB.
    Collector(collector::CollectorArgs),
    #[cfg(feature = "store")]
    /// Issue #5: rightsizing, idle detection and cost over 2,000 containers
    /// with 14 days of 1-minute usage, in process.
    Analysis(analysis::AnalysisArgs),
    #[cfg(feature = "store")]
    /// Issue #6: update decisions for 1,000 images with 200 tags each,
    /// CPU time, registry excluded.
    Updates(updates::UpdatesArgs),
    #[cfg(feature = "store")]
    /// A probe, not a goal: bytes on disk per table of a store (and per
    /// column of `container_samples`, as stored and sorted).
    StoreSizes(store_sizes::StoreSizesArgs),
    /// The process `agent --load busy` runs in each benchmark cgroup.
    #[command(hide = true)]
    BusyChild,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::BusyChild) {
        // Before the Ctrl-C handler: a load process needs none.
        cgroups::busy_child();
    }
    let interrupt = match Interrupt::install() {
        Ok(interrupt) => interrupt,
        Err(e) => {
            eprintln!("upid-bench: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &cli.command {
        Command::BusyChild => Ok(()),
        Command::Agent(args) => agent::run(args, &interrupt).map(|report| {
            if args.json {
                eprint!("{}", report.summary());
                println!("{}", report.to_json());
            } else {
                print!("{}", report.summary());
            }
        }),
        #[cfg(feature = "store")]
        Command::Analysis(args) => analysis::run(args).map(|report| {
            if args.json {
                eprint!("{}", report.summary());
                println!("{}", report.to_json());
            } else {
                print!("{}", report.summary());
            }
        }),
        #[cfg(feature = "store")]
        Command::Updates(args) => updates::run(args).map(|report| {
            if args.json {
                eprint!("{}", report.summary());
                println!("{}", report.to_json());
            } else {
                print!("{}", report.summary());
            }
        }),
        #[cfg(feature = "store")]
        Command::StoreSizes(args) => store_sizes::run(args),
        #[cfg(feature = "store")]
        Command::Collector(args) => collector::run(args, &interrupt).map(|report| {
            if args.json {
                eprint!("{}", report.summary());
                println!("{}", report.to_json());
            } else {
                print!("{}", report.summary());
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if Interrupt::is_interruption(&e) => ExitCode::from(interrupt::EXIT_INTERRUPTED),
        Err(e) => {
            eprintln!("upid-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
