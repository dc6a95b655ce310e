//! `upid`: the command-line client of the collector's query API.

fn main() {}
