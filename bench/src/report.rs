//! Goals and how results are shown: PASS/MISS per goal (a miss is reported,
//! never a crash), human units, one JSON line per run.

use std::time::SystemTime;

use serde_json::{Value, json};

/// Which way a goal bounds its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The value must be at most the target.
    AtMost,
    /// The value must be below the target.
    Below,
    /// The value must be at least the target (only the store benchmarks'
    /// goals are lower bounds).
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    AtLeast,
}

impl Bound {
    fn symbol(self) -> &'static str {
        match self {
            Bound::AtMost => "≤",
            Bound::Below => "<",
            Bound::AtLeast => "≥",
        }
    }
}

/// A goal from an issue, with the value measured against it.
#[derive(Debug, Clone)]
pub struct Goal {
    /// Short identifier (`cpu_per_container_median`).
    pub name: &'static str,
    /// What the goal says, for people.
    pub description: &'static str,
    /// The measured value, `None` when it could not be measured in this
    /// run (then the goal is neither passed nor missed).
    pub value: Option<f64>,
    /// The target.
    pub target: f64,
    /// Which way the target bounds the value.
    pub bound: Bound,
    /// Unit of value and target (`ns`, `bytes`, `%`).
    pub unit: &'static str,
}

impl Goal {
    /// `Some(true)` if met, `Some(false)` if missed, `None` if not measured.
    pub fn passed(&self) -> Option<bool> {
        self.value.map(|v| match self.bound {
            Bound::AtMost => v <= self.target,
            Bound::Below => v < self.target,
            Bound::AtLeast => v >= self.target,
        })
    }

    /// `PASS`, `MISS` or `n/a`.
    pub fn verdict(&self) -> &'static str {
        match self.passed() {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "n/a",
        }
    }

    /// One line for people: description, value, goal, verdict.
    pub fn line(&self) -> String {
        let value = self
            .value
            .map_or_else(|| "not measured".to_owned(), |v| human(v, self.unit));
        format!(
            "{:<4}  {:<44} {:>12}   goal {} {}",
            self.verdict(),
            self.description,
            value,
            self.bound.symbol(),
            human(self.target, self.unit)
        )
    }

    /// As a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "value": self.value,
            "target": self.target,
            "bound": match self.bound {
                Bound::AtMost => "at_most",
                Bound::Below => "below",
                Bound::AtLeast => "at_least",
            },
            "unit": self.unit,
            "verdict": self.verdict(),
        })
    }
}

/// `value` in a readable unit: ns → µs/ms/s, bytes → KiB/MiB, `%` as is.
pub fn human(value: f64, unit: &str) -> String {
    match unit {
        "ns" if value >= 1e9 => format!("{:.2} s", value / 1e9),
        "ns" if value >= 1e6 => format!("{:.2} ms", value / 1e6),
        "ns" if value >= 1e3 => format!("{:.1} µs", value / 1e3),
        "ns" => format!("{value:.0} ns"),
        "bytes" if value >= (1u64 << 20) as f64 => {
            format!("{:.1} MiB", value / (1u64 << 20) as f64)
        }
        "bytes" if value >= 1024.0 => format!("{:.1} KiB", value / 1024.0),
        "bytes" => format!("{value:.0} B"),
        "%" => format!("{value:.3} %"),
        other => format!("{value} {other}"),
    }
}

/// Now as RFC 3339 UTC, seconds precision.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let mut g = Goal {
            name: "x",
            description: "x",
            value: Some(25_000.0),
            target: 25_000.0,
            bound: Bound::AtMost,
            unit: "ns",
        };
        assert_eq!(g.verdict(), "PASS");
        g.bound = Bound::Below;
        assert_eq!(g.verdict(), "MISS");
        g.bound = Bound::AtLeast;
        assert_eq!(g.verdict(), "PASS");
        g.value = Some(24_999.0);
        assert_eq!(g.verdict(), "MISS");
        g.value = None;
        assert_eq!(g.verdict(), "n/a");
    }

    #[test]
    fn human_units() {
        assert_eq!(human(12_345.0, "ns"), "12.3 µs");
        assert_eq!(human(2_500_000.0, "ns"), "2.50 ms");
        assert_eq!(human(16.0 * 1024.0 * 1024.0, "bytes"), "16.0 MiB");
        assert_eq!(human(0.2, "%"), "0.200 %");
    }
}
