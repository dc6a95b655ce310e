//! `upid completion SHELL`: the shell completion script, from clap.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::args::Cli;

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "upid", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_that_knows_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell);
            assert!(s.contains("upid"), "{shell}");
            for word in [
                "doctor",
                "describe",
                "containers",
                "events",
                "since",
                "all-namespaces",
                "rightsize",
                "idle",
                "cost",
                "analyze",
                "cpu-limit-ratio",
                "window",
            ] {
                assert!(s.contains(word), "{shell} script lacks {word}");
            }
        }
        assert!(script(Shell::Bash).contains("complete -F"));
        // `--type` completes to the event type names.
        let bash = script(Shell::Bash);
        assert!(
            bash.contains("start die oom restart image-change health-change create destroy"),
            "{bash}"
        );
        // `cost --by` completes to the groupings.
        assert!(
            bash.contains("namespace workload node image container"),
            "{bash}"
        );
    }
}
