//! The `retention:` section of the collector's config file: how long each
//! kind of data is kept and the disk budget. Every field is optional; the
//! defaults are those docs/collector.md (section Retention) lists.

use serde::Deserialize;

/// Default [`RetentionSettings::raw_days`]: a week of agent samples.
pub const DEFAULT_RAW_DAYS: u32 = 7;
/// Default [`RetentionSettings::usage_days`]: 90 days of 1-minute usage.
pub const DEFAULT_USAGE_DAYS: u32 = 90;
/// Default [`RetentionSettings::disk_budget_bytes`]: 10 GiB.
pub const DEFAULT_DISK_BUDGET_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// Default [`RetentionSettings::interval_s`]: hourly.
pub const DEFAULT_INTERVAL_S: u64 = 3_600;
/// Longest retention accepted, in days (ten years).
pub const MAX_DAYS: u32 = 3_650;
/// Smallest disk budget accepted besides 0 (none): 64 MiB. Less cannot
/// hold a day of a small fleet, and is most likely a unit mistake.
pub const MIN_DISK_BUDGET_BYTES: u64 = 64 * 1024 * 1024;
/// Shortest time between runs: a minute.
pub const MIN_INTERVAL_S: u64 = 60;
/// Longest time between runs: a day.
pub const MAX_INTERVAL_S: u64 = 86_400;

/// Retention: what is kept for how long, and the disk budget.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Run retention at all (off: nothing is ever dropped).
    pub enabled: bool,
    /// Whole UTC days of agent samples (`container_samples`,
    /// `node_samples`, `network_samples`) and of the `batches` ledger kept
    /// before the current day.
    pub raw_days: u32,
    /// Whole UTC days of 1-minute `usage` rows (and their hourly summary),
    /// lifecycle and update events, and inventory of containers gone,
    /// kept before the current day. At least `raw_days`.
    pub usage_days: u32,
    /// Most bytes the store may use by DuckDB's own accounting (blocks in
    /// use plus the WAL); over it, whole oldest days are dropped. 0: no
    /// budget.
    pub disk_budget_bytes: u64,
    /// Seconds between runs (the first runs at start).
    pub interval_s: u64,
}

impl Default for RetentionSettings {
    fn default() -> RetentionSettings {
        RetentionSettings {
            enabled: true,
            raw_days: DEFAULT_RAW_DAYS,
            usage_days: DEFAULT_USAGE_DAYS,
            disk_budget_bytes: DEFAULT_DISK_BUDGET_BYTES,
            interval_s: DEFAULT_INTERVAL_S,
        }
    }
}

impl RetentionSettings {
    /// Checks every value; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_DAYS).contains(&self.raw_days) {
            return Err(format!(
                "retention.raw_days is {}: use 1 to {MAX_DAYS}",
                self.raw_days
            ));
        }
        if !(self.raw_days..=MAX_DAYS).contains(&self.usage_days) {
            return Err(format!(
                "retention.usage_days is {}: use retention.raw_days ({}) to {MAX_DAYS} (usage is rolled up from the raw samples, so it is kept at least as long)",
                self.usage_days, self.raw_days
            ));
        }
        if self.disk_budget_bytes != 0 && self.disk_budget_bytes < MIN_DISK_BUDGET_BYTES {
            return Err(format!(
                "retention.disk_budget_bytes (--disk-budget-bytes, UPID_DISK_BUDGET_BYTES) is {}: use 0 (no budget) or at least {MIN_DISK_BUDGET_BYTES} (64 MiB); the value is in bytes",
                self.disk_budget_bytes
            ));
        }
        if !(MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&self.interval_s) {
            return Err(format!(
                "retention.interval_s is {}: use {MIN_INTERVAL_S} (a minute) to {MAX_INTERVAL_S} (a day)",
                self.interval_s
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<RetentionSettings, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = RetentionSettings::default();
        assert!(s.enabled);
        assert_eq!((s.raw_days, s.usage_days), (7, 90));
        assert_eq!(s.disk_budget_bytes, 10_737_418_240);
        assert_eq!(s.interval_s, 3_600);
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(parse("{}"), Ok(s));
    }

    #[test]
    fn keys_may_be_given_alone() {
        let s = parse("raw_days: 3\ndisk_budget_bytes: 0\n").unwrap_or_default();
        assert_eq!((s.raw_days, s.usage_days, s.disk_budget_bytes), (3, 90, 0));
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        for (yaml, key) in [
            ("raw_days: 0", "retention.raw_days"),
            ("raw_days: 4000", "retention.raw_days"),
            ("raw_days: 30\nusage_days: 10", "retention.usage_days"),
            ("usage_days: 3651", "retention.usage_days"),
            ("disk_budget_bytes: 10", "retention.disk_budget_bytes"),
            ("interval_s: 5", "retention.interval_s"),
            ("interval_s: 100000", "retention.interval_s"),
        ] {
            let s = parse(yaml).unwrap_or_default();
            let e = s.validate().err().unwrap_or_default();
            assert!(e.starts_with(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse("raw_dayz: 3").err().unwrap_or_default();
        assert!(e.contains("raw_dayz"), "{e}");
    }
}
