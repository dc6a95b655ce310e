//! Numbers for people: binary sizes (`340Mi`, `1.5Gi`), cores and
//! millicores, percentages, money, ages (`5s`, `3m20s`, `2d`) and
//! timestamps (RFC 3339).

use std::time::{Duration, UNIX_EPOCH};

/// Shown where a value is absent (unlimited, not measured, unknown).
pub const NONE: &str = "-";

const NS_PER_S: i64 = 1_000_000_000;

/// A binary size: `512B`, `12Ki`, `340Mi`, `1.5Gi`, `12Gi`, `2.0Ti`.
/// Kibibytes and mebibytes are whole; gibibytes and up keep one decimal
/// below 10.
pub fn bytes(v: u64) -> String {
    const UNITS: [&str; 6] = ["B", "Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut value = v as f64;
    let mut unit = 0;
    // 1023.6Mi would print as 1024Mi: carry to the next unit instead.
    while value >= 1023.5 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let suffix = UNITS[unit];
    if unit == 0 {
        format!("{v}{suffix}")
    } else if unit >= 3 && value < 9.95 {
        format!("{value:.1}{suffix}")
    } else {
        format!("{value:.0}{suffix}")
    }
}

/// [`bytes`], or `-`.
pub fn opt_bytes(v: Option<u64>) -> String {
    v.map_or_else(|| NONE.into(), bytes)
}

/// A byte rate: `[`bytes`]/s`, or `-`.
pub fn opt_bytes_per_s(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() && v >= 0.0 => format!("{}/s", bytes(v.round() as u64)),
        _ => NONE.into(),
    }
}

/// CPU cores used: three decimals below one core (`0.253`), two below ten
/// (`1.25`), one above (`12.5`); or `-`.
pub fn opt_cores(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            let v = v.max(0.0);
            if v < 1.0 {
                format!("{v:.3}")
            } else if v < 10.0 {
                format!("{v:.2}")
            } else {
                format!("{v:.1}")
            }
        }
        _ => NONE.into(),
    }
}

/// A CPU limit in cores without trailing zeros (`1500` → `1.5`), or `-`
/// when unlimited.
pub fn opt_limit_cores(millicores: Option<u64>) -> String {
    match millicores {
        Some(m) => {
            let text = format!("{}.{:03}", m / 1000, m % 1000);
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        None => NONE.into(),
    }
}

/// A ratio as a percentage: `3.2%` below 10, `45%` above; or `-`.
pub fn opt_percent(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) if r.is_finite() => {
            let p = r * 100.0;
            if p.abs() < 9.95 {
                format!("{p:.1}%")
            } else {
                format!("{p:.0}%")
            }
        }
        _ => NONE.into(),
    }
}

/// How long ago `then_unix_ns` was at `now_unix_ns`, kubectl style:
/// `45s`, `3m20s` (under 10 minutes), `42m`, `2h5m` (under 8 hours), `20h`,
/// `3d4h` (under 8 days), `12d`, `2y30d`. `-` when `then` is unset (0 or
/// negative); a time in the future (clock skew) counts as `0s`.
pub fn age(now_unix_ns: i64, then_unix_ns: i64) -> String {
    if then_unix_ns <= 0 {
        return NONE.into();
    }
    compact_s(now_unix_ns.saturating_sub(then_unix_ns) / NS_PER_S)
}

/// A span of seconds written as [`age`] writes ages (`45s`, `20h`, `3d4h`,
/// `7d`), for windows of history; `-` when not positive.
pub fn span_s(seconds: i64) -> String {
    if seconds <= 0 {
        return NONE.into();
    }
    compact_s(seconds)
}

fn compact_s(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y{}d", d / 365, d % 365)
    }
}

/// CPU in millicores, as Kubernetes writes it: `250m`, `4000m`; or `-`.
pub fn opt_millicores(millicores: Option<u64>) -> String {
    millicores.map_or_else(|| NONE.into(), |m| format!("{m}m"))
}

/// `current→recommended` (`4000m→250m`, `512Mi→-`), each side written by
/// `show` (`-` when unset); just `-` when both are unset.
pub fn change<T: Copy>(
    current: Option<T>,
    recommended: Option<T>,
    show: impl Fn(Option<T>) -> String,
) -> String {
    if current.is_none() && recommended.is_none() {
        return NONE.into();
    }
    format!("{}→{}", show(current), show(recommended))
}

/// An amount of money with two decimals: `$12.34` for US dollars,
/// `12.34 EUR` for any other currency code, `12.34` without one;
/// negative amounts lead with the sign (`-$3.10`). Not finite: `-`.
pub fn money(amount: f64, currency: &str) -> String {
    money_decimals(amount, currency, 2)
}

/// A unit price, as [`money`] writes amounts but with four decimals below
/// one (`$0.0316` per core-hour).
pub fn price(amount: f64, currency: &str) -> String {
    let decimals = if amount.abs() < 1.0 { 4 } else { 2 };
    money_decimals(amount, currency, decimals)
}

fn money_decimals(amount: f64, currency: &str, decimals: usize) -> String {
    if !amount.is_finite() {
        return NONE.into();
    }
    // -0.004 rounds to 0.00: no sign for nothing.
    let scale = 10f64.powi(decimals as i32);
    let rounded = (amount * scale).round() / scale;
    let sign = if rounded < 0.0 { "-" } else { "" };
    let value = format!("{:.decimals$}", rounded.abs());
    let code = currency.trim();
    if code.eq_ignore_ascii_case("USD") {
        format!("{sign}${value}")
    } else if code.is_empty() {
        format!("{sign}{value}")
    } else {
        format!("{sign}{value} {code}")
    }
}

/// A signed duration in seconds for clock skews: `+0.120s`, `-3.5s`.
pub fn skew(ns: i64) -> String {
    let s = ns as f64 / NS_PER_S as f64;
    let text = if s.abs() < 10.0 {
        format!("{s:+.3}s")
    } else {
        format!("{s:+.1}s")
    };
    // A few nanoseconds behind is no skew: not `-0.000s`.
    match text.as_str() {
        "-0.000s" => "+0.000s".into(),
        _ => text,
    }
}

/// A step or window as people write it: `5m`, `1h`, `30s`.
pub fn duration_ns(ns: i64) -> String {
    if ns <= 0 {
        return NONE.into();
    }
    humantime::format_duration(Duration::from_nanos(ns as u64)).to_string()
}

/// RFC 3339 UTC with second precision, or `None` when unset (0 or
/// negative).
pub fn rfc3339(unix_ns: i64) -> Option<String> {
    if unix_ns <= 0 {
        return None;
    }
    let t = UNIX_EPOCH + Duration::from_nanos(unix_ns as u64);
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

/// [`rfc3339`] followed by the age in parentheses, or `-`.
pub fn when(now_unix_ns: i64, unix_ns: i64) -> String {
    match rfc3339(unix_ns) {
        Some(t) => format!("{t} ({} ago)", age(now_unix_ns, unix_ns)),
        None => NONE.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KI: u64 = 1024;
    const MI: u64 = 1024 * KI;
    const GI: u64 = 1024 * MI;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(12 * KI + 100), "12Ki");
        assert_eq!(bytes(340 * MI), "340Mi");
        assert_eq!(bytes(3 * GI / 2), "1.5Gi");
        assert_eq!(bytes(12 * GI), "12Gi");
        assert_eq!(bytes(1024 * GI), "1.0Ti");
        assert_eq!(bytes(MI - 1), "1Mi");
        assert_eq!(bytes(GI - MI / 4), "1.0Gi");
        assert_eq!(opt_bytes(None), "-");
        assert_eq!(opt_bytes_per_s(Some(2048.4)), "2Ki/s");
        assert_eq!(opt_bytes_per_s(None), "-");
    }

    #[test]
    fn cores_and_limits_read_naturally() {
        assert_eq!(opt_cores(Some(0.2534)), "0.253");
        assert_eq!(opt_cores(Some(1.25)), "1.25");
        assert_eq!(opt_cores(Some(12.46)), "12.5");
        assert_eq!(opt_cores(Some(-0.0001)), "0.000");
        assert_eq!(opt_cores(None), "-");
        assert_eq!(opt_limit_cores(Some(1500)), "1.5");
        assert_eq!(opt_limit_cores(Some(250)), "0.25");
        assert_eq!(opt_limit_cores(Some(2000)), "2");
        assert_eq!(opt_limit_cores(None), "-");
        assert_eq!(opt_percent(Some(0.032)), "3.2%");
        assert_eq!(opt_percent(Some(0.456)), "46%");
        assert_eq!(opt_percent(None), "-");
    }

    #[test]
    fn ages_are_short_like_kubectl() {
        let now = 1_700_000_000 * NS_PER_S;
        let ago = |s: i64| age(now, now - s * NS_PER_S);
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(45), "45s");
        assert_eq!(ago(200), "3m20s");
        assert_eq!(ago(600), "10m");
        assert_eq!(ago(42 * 60), "42m");
        assert_eq!(ago(2 * 3600 + 5 * 60), "125m");
        assert_eq!(ago(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(ago(20 * 3600), "20h");
        assert_eq!(ago(3 * 86_400 + 4 * 3600), "3d4h");
        assert_eq!(ago(12 * 86_400), "12d");
        assert_eq!(ago(800 * 86_400), "2y70d");
        assert_eq!(age(now, now + 5 * NS_PER_S), "0s", "future (skew) is 0s");
        assert_eq!(age(now, 0), "-", "unset");
    }

    #[test]
    fn windows_millicores_and_changes_are_short() {
        assert_eq!(span_s(7 * 86_400), "7d");
        assert_eq!(span_s(3 * 86_400 + 4 * 3600), "3d4h");
        assert_eq!(span_s(90), "90s");
        assert_eq!(span_s(0), "-");
        assert_eq!(opt_millicores(Some(250)), "250m");
        assert_eq!(opt_millicores(None), "-");
        assert_eq!(change(Some(4000), Some(250), opt_millicores), "4000m→250m");
        assert_eq!(change(None, Some(250), opt_millicores), "-→250m");
        assert_eq!(change(Some(512 * MI), None, opt_bytes), "512Mi→-");
        assert_eq!(change::<u64>(None, None, opt_bytes), "-");
    }

    #[test]
    fn money_carries_its_currency() {
        assert_eq!(money(12.344, "USD"), "$12.34");
        assert_eq!(money(12.345_1, "usd"), "$12.35");
        assert_eq!(money(-3.1, "USD"), "-$3.10");
        assert_eq!(money(-0.004, "USD"), "$0.00");
        assert_eq!(money(12.34, "EUR"), "12.34 EUR");
        assert_eq!(money(1234.5, ""), "1234.50");
        assert_eq!(money(f64::NAN, "USD"), "-");
        assert_eq!(price(0.031_611, "USD"), "$0.0316");
        assert_eq!(price(0.004_237, "EUR"), "0.0042 EUR");
        assert_eq!(price(1.5, "USD"), "$1.50");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(
            rfc3339(1_700_000_000 * NS_PER_S + 123).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(rfc3339(0), None);
        let now = 1_700_000_060 * NS_PER_S;
        assert_eq!(
            when(now, 1_700_000_000 * NS_PER_S),
            "2023-11-14T22:13:20Z (60s ago)"
        );
    }

    #[test]
    fn skews_and_steps_are_signed_and_short() {
        assert_eq!(skew(120_000_000), "+0.120s");
        assert_eq!(skew(-3_500_000_000), "-3.500s");
        assert_eq!(skew(-35 * NS_PER_S), "-35.0s");
        assert_eq!(skew(-20_000), "+0.000s");
        assert_eq!(duration_ns(300 * NS_PER_S), "5m");
        assert_eq!(duration_ns(0), "-");
    }
}
