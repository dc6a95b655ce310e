//! The `upid` binary itself starts and answers offline: its version, and
//! shell completion that names every command.
//!
//! This is the root crate's one integration test. Besides what it checks,
//! it makes `cargo test --workspace` build the `upid` binary, which the
//! end-to-end tests in `tests/` (crate `upid-e2e`) run: cargo builds a
//! package's binaries only for that package's own integration tests.

use std::process::Command;

fn upid(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_upid"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running upid {args:?}: {e}"));
    assert!(
        out.status.success(),
        "upid {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn version_and_completion_work_without_a_collector() {
    let version = upid(&["--version"]);
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "--version names the version: {version}"
    );
    let bash = upid(&["completion", "bash"]);
    for command in [
        "get",
        "top",
        "describe",
        "events",
        "rightsize",
        "idle",
        "cost",
        "analyze",
        "updates",
        "decide",
        "apply",
        "rollouts",
        "doctor",
        "completion",
    ] {
        assert!(bash.contains(command), "bash completion offers {command}");
    }
}
