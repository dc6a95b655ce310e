//! `--since` and `--until` of `upid events`: a duration back from now
//! (`30m`, `2h`, `7d`, `1h30m`), an RFC 3339 time (`2024-05-01T12:00:00Z`,
//! `2024-05-01T14:00:00+02:00`, fractions allowed), a date
//! (`2024-05-01`, midnight UTC), or `now`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeArg {
    /// This long before now.
    Ago(Duration),
    /// This instant (Unix ns).
    At(i64),
}

impl TimeArg {
    /// The instant, in Unix ns, given what now is.
    pub fn resolve(self, now_unix_ns: i64) -> i64 {
        match self {
            TimeArg::Ago(d) => {
                now_unix_ns.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            }
            TimeArg::At(t) => t,
        }
    }
}

/// Parses a `--since`/`--until` value; the error says which forms work.
pub fn parse(text: &str) -> Result<TimeArg, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(TimeArg::Ago(Duration::ZERO));
    }
    if let Ok(d) = humantime::parse_duration(t) {
        return Ok(TimeArg::Ago(d));
    }
    if let Some(at) = parse_timestamp(t) {
        return Ok(TimeArg::At(at));
    }
    Err(format!(
        "`{text}` is neither a duration back from now (30m, 2h, 7d) nor an RFC 3339 time (2024-05-01T12:00:00Z, 2024-05-01T14:00:00+02:00) nor a date (2024-05-01)"
    ))
}

/// An RFC 3339 time with `Z` or a numeric offset, or a bare date; Unix ns.
fn parse_timestamp(t: &str) -> Option<i64> {
    // A date alone: midnight UTC.
    if t.len() == 10 {
        return utc_ns(&format!("{t}T00:00:00Z"));
    }
    if let Some(base) = t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        return utc_ns(&format!("{base}Z"));
    }
    // `+HH:MM` / `-HH:MM` after the time of day (not the date's dashes).
    let split = t.len().checked_sub(6)?;
    let (base, offset) = (t.get(..split)?, t.get(split..)?);
    let sign = match offset.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hh, mm) = offset.get(1..)?.split_once(':')?;
    if hh.len() != 2 || mm.len() != 2 || !base.contains(['T', 't', ' ']) {
        return None;
    }
    let (h, m): (i64, i64) = (hh.parse().ok()?, mm.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    let local = utc_ns(&format!("{base}Z"))?;
    // 14:00+02:00 is 12:00Z.
    Some(local - sign * (h * 3600 + m * 60) * 1_000_000_000)
}

fn utc_ns(rfc3339_z: &str) -> Option<i64> {
    let t: SystemTime = humantime::parse_rfc3339_weak(rfc3339_z).ok()?;
    let since = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    /// 2023-11-14T22:13:20Z.
    const T: i64 = 1_700_000_000 * S;

    #[test]
    fn durations_count_back_from_now() {
        for (text, secs) in [
            ("30m", 1800),
            ("2h", 7200),
            ("7d", 7 * 86_400),
            ("1h30m", 5400),
            ("45s", 45),
        ] {
            assert_eq!(
                parse(text),
                Ok(TimeArg::Ago(Duration::from_secs(secs))),
                "{text}"
            );
            assert_eq!(parse(text).map(|a| a.resolve(T)), Ok(T - secs as i64 * S));
        }
        assert_eq!(parse("now").map(|a| a.resolve(T)), Ok(T));
    }

    #[test]
    fn rfc3339_times_with_z_offsets_and_fractions() {
        assert_eq!(parse("2023-11-14T22:13:20Z"), Ok(TimeArg::At(T)));
        assert_eq!(parse("2023-11-14T22:13:20.5Z"), Ok(TimeArg::At(T + S / 2)));
        assert_eq!(parse("2023-11-15T00:13:20+02:00"), Ok(TimeArg::At(T)));
        assert_eq!(parse("2023-11-14T17:13:20-05:00"), Ok(TimeArg::At(T)));
        assert_eq!(
            parse("2023-11-14"),
            Ok(TimeArg::At(T - (22 * 3600 + 13 * 60 + 20) * S))
        );
    }

    #[test]
    fn garbage_is_refused_with_the_forms_that_work() {
        for bad in ["yesterday", "5 parsecs", "2023-13-45T00:00:00Z", "", "-5m"] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains("30m, 2h, 7d"), "{e}");
            assert!(e.contains("2024-05-01T12:00:00Z"), "{e}");
        }
    }
}
