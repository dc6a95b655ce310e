//! The `updates:` section of the collector's config file: the global update
//! policy and how registries are asked. Every field is optional; the
//! defaults are those docs/updates.md lists.

use std::path::PathBuf;

use serde::Deserialize;

/// Update checks: policy defaults and registry access.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateSettings {
    /// Answer `ListUpdates` (asks registries for tags). Off: the RPC says
    /// update checks are off.
    pub enabled: bool,
    /// Policy of containers without a `upid.io/update-policy` label:
    /// `default` (patch approved, minor for review, major blocked), or one
    /// of `none`, `digest`, `patch`, `minor`, `major`, `all`.
    pub policy: String,
    /// Minimum release age of containers without `upid.io/min-age`
    /// (humantime, e.g. `3d`; empty: none).
    pub min_age: String,
    /// Registry access.
    pub registry: RegistrySettings,
    /// Newer tags per image whose digest and creation time are fetched
    /// (the newest ones of the running tag's shape); the rest are still
    /// classified, without an age.
    pub max_candidates: usize,
    /// Images checked at once.
    pub concurrency: usize,
    /// Length in seconds of the windows before and after an image change
    /// that `ListRollouts` judges with the health gate (default 1800:
    /// 30 min; from [`MIN_ROLLOUT_WINDOW_S`] to [`MAX_ROLLOUT_WINDOW_S`]).
    pub rollout_window_s: u64,
}

/// Default [`UpdateSettings::rollout_window_s`]: 30 minutes.
pub const DEFAULT_ROLLOUT_WINDOW_S: u64 = 1_800;
/// Shortest rollout window: one `usage` row (a minute).
pub const MIN_ROLLOUT_WINDOW_S: u64 = 60;
/// Longest rollout window: a week.
pub const MAX_ROLLOUT_WINDOW_S: u64 = 7 * 86_400;

impl Default for UpdateSettings {
    fn default() -> UpdateSettings {
        UpdateSettings {
            enabled: true,
            policy: "default".to_owned(),
            min_age: String::new(),
            registry: RegistrySettings::default(),
            max_candidates: 10,
            concurrency: 4,
            rollout_window_s: DEFAULT_ROLLOUT_WINDOW_S,
        }
    }
}

/// How registries are asked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// Requests per second to one registry host (all images together).
    pub requests_per_second: u32,
    /// How long tag lists, digests and creation times are reused (seconds).
    pub cache_ttl_s: u64,
    /// Timeout of one HTTP request (seconds).
    pub request_timeout_s: u64,
    /// Registries spoken to over plain HTTP besides localhost and
    /// 127.0.0.0/8 (`host:port`).
    pub insecure: Vec<String>,
    /// Docker `config.json` with registry credentials (default:
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
}

impl Default for RegistrySettings {
    fn default() -> RegistrySettings {
        RegistrySettings {
            requests_per_second: 5,
            cache_ttl_s: 3_600,
            request_timeout_s: 15,
            insecure: Vec::new(),
            docker_config: None,
        }
    }
}

impl UpdateSettings {
    /// Checks values that parse but cannot work; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.registry.requests_per_second == 0 {
            return Err("updates.registry.requests_per_second must be at least 1".into());
        }
        if self.registry.request_timeout_s == 0 {
            return Err("updates.registry.request_timeout_s must be at least 1".into());
        }
        if self.concurrency == 0 {
            return Err("updates.concurrency must be at least 1".into());
        }
        if !(MIN_ROLLOUT_WINDOW_S..=MAX_ROLLOUT_WINDOW_S).contains(&self.rollout_window_s) {
            return Err(format!(
                "updates.rollout_window_s is {}: use {MIN_ROLLOUT_WINDOW_S} (a minute) to {MAX_ROLLOUT_WINDOW_S} (a week)",
                self.rollout_window_s
            ));
        }
        if !self.min_age.trim().is_empty()
            && humantime::parse_duration(self.min_age.trim()).is_err()
        {
            return Err(format!(
                "updates.min_age {:?} is not a duration such as 3d or 48h",
                self.min_age
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> UpdateSettings {
        match serde_norway::from_str(yaml) {
            Ok(s) => s,
            Err(e) => panic!("{yaml:?} does not parse: {e}"),
        }
    }

    #[test]
    fn the_rollout_window_defaults_to_30_minutes_and_is_bounded() {
        let s = parse("policy: patch\n");
        assert_eq!(s.rollout_window_s, DEFAULT_ROLLOUT_WINDOW_S);
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(parse("rollout_window_s: 600\n").validate(), Ok(()));
        for bad in ["rollout_window_s: 30\n", "rollout_window_s: 604801\n"] {
            let why = parse(bad).validate().err().unwrap_or_default();
            assert!(
                why.starts_with("updates.rollout_window_s is ")
                    && why.contains("use 60 (a minute)"),
                "{bad}: {why}"
            );
        }
    }
}
