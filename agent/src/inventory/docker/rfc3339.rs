//! Docker's timestamps (`2024-05-07T21:09:36.123456789Z`, RFC 3339 with up
//! to nanosecond precision) as nanoseconds since the Unix epoch, without a
//! date crate. Docker writes `0001-01-01T00:00:00Z` for "never"; that, and
//! anything before 1970, is `None`.

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into nanoseconds since
/// the Unix epoch. `None` for text that is not such a timestamp, for
/// Docker's zero time and for instants before 1970 (Docker never means
/// those), and for instants past the `i64` range.
pub fn unix_ns(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // A leap second (":60") is kept as the last nanosecond of ":59".
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut fraction_ns: i64 = 0;
    if let Some((b'.', tail)) = rest.split_first() {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let mut scale = 100_000_000;
        for &c in &tail[..n.min(9)] {
            fraction_ns += i64::from(c - b'0') * scale;
            scale /= 10;
        }
        rest = &tail[n..];
    }
    let offset_s: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2], 0, 2)?;
            let minutes = digits(&[*m1, *m2], 0, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let s = hours * 3600 + minutes * 60;
            if *sign == b'-' { -s } else { s }
        }
        _ => return None,
    };
    let (second, fraction_ns) = if second == 60 {
        (59, 999_999_999)
    } else {
        (second, fraction_ns)
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    if secs < 0 {
        return None;
    }
    secs.checked_mul(1_000_000_000)?.checked_add(fraction_ns)
}

/// The number made of `len` ASCII digits at `at`, or `None`.
fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let s = b.get(at..at + len)?;
    s.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_timestamps_parse_to_the_nanosecond() {
        // `date -u -d 2026-11-24T00:46:29.096124611Z +%s%N`
        assert_eq!(
            unix_ns("2026-11-24T00:46:29.096124611Z"),
            Some(1_795_481_189_096_124_611)
        );
        assert_eq!(unix_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_ns("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        // Go trims trailing zeros from the fraction.
        assert_eq!(
            unix_ns("2026-11-24T00:46:30.47694944Z"),
            Some(1_795_481_190_476_949_440)
        );
        // More than nine digits: the rest is below a nanosecond.
        assert_eq!(unix_ns("1970-01-01T00:00:00.0000000019Z"), Some(1));
        assert_eq!(
            unix_ns("2000-02-29T12:00:00+02:00"),
            unix_ns("2000-02-29T10:00:00Z")
        );
        assert_eq!(
            unix_ns("2000-03-01T00:30:00-01:00"),
            unix_ns("2000-03-01T01:30:00Z")
        );
        assert_eq!(
            unix_ns("2016-12-31T23:59:60Z"),
            Some(1_483_228_799_999_999_999)
        );
    }

    #[test]
    fn zero_time_and_garbage_are_absent() {
        for text in [
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00Zjunk",
            "2024-01-01T00:00:00+0100",
            "2024-01-01 00:00:00 +0000 UTC",
            "+2024-01-01T00:00:00Z",
            "99999-01-01T00:00:00Z",
        ] {
            assert_eq!(unix_ns(text), None, "{text:?}");
        }
    }
}
