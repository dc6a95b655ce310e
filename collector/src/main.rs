//! `upid-collector`: parses arguments and runs the collector library.

fn main() {}
