//! Pure parsers for the cgroup (v1 and v2) and PSI file formats.
//!
//! Every parser takes the file's bytes, does no I/O, never panics on any
//! input, and returns a [`ParseError`] that says what was wrong. They work on
//! bytes (kernel files are ASCII) and look up only the keys the caller asks
//! for, so parsing a 60-line `memory.stat` costs a few hundred nanoseconds and
//! allocates nothing unless it fails.
//!
//! Formats, in kernel terms (`Documentation/admin-guide/cgroup-v2.rst`):
//! - single value: `123\n`, or `max` for "no limit";
//! - flat keyed: `key value` lines (`memory.stat`, `cpu.stat`,
//!   `memory.events`, v1 `memory.oom_control`, v1 `cpuacct.stat`);
//! - nested keyed: `8:0 rbytes=1 wbytes=2 ...` (v2 `io.stat`);
//! - v1 blkio: `8:0 Read 123` lines and a final `Total N`;
//! - PSI: `some avg10=.. avg60=.. avg300=.. total=N` and optionally `full ...`.

use upid::model::{IoStats, PressureStats};

/// What was wrong with a cgroup file's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The file was empty (or only whitespace) where a value was expected.
    #[error("empty file where a value was expected")]
    Empty,
    /// A token that should have been an unsigned integer was not one (or
    /// overflowed 64 bits).
    #[error("`{0}` is not an unsigned 64-bit integer")]
    BadNumber(String),
    /// A token that should have been a signed integer was not one.
    #[error("`{0}` is not a signed 64-bit integer")]
    BadSignedNumber(String),
    /// A line did not have the expected shape.
    #[error("line {line}: {what}: `{text}`")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What was expected.
        what: &'static str,
        /// The line (truncated).
        text: String,
    },
    /// A key every kernel writes was not there.
    #[error("missing key `{0}`")]
    MissingKey(&'static str),
    /// A value was out of its valid range.
    #[error("{what}: {value} out of range")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value read.
        value: u64,
    },
}

/// Maximum bytes of offending input quoted in an error.
const QUOTE_MAX_BYTES: usize = 48;

/// Quotes at most [`QUOTE_MAX_BYTES`] of `bytes` for an error message.
fn quote(bytes: &[u8]) -> String {
    let cut = bytes.get(..QUOTE_MAX_BYTES).unwrap_or(bytes);
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < bytes.len() {
        s.push('…');
    }
    s
}

fn bad_line(line: usize, what: &'static str, text: &[u8]) -> ParseError {
    ParseError::BadLine {
        line,
        what,
        text: quote(text),
    }
}

/// Strips ASCII whitespace (including `\n`) from both ends.
pub fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// Parses an unsigned decimal integer token (no sign, no whitespace).
pub fn parse_u64_token(token: &[u8]) -> Result<u64, ParseError> {
    if token.is_empty() {
        return Err(ParseError::BadNumber(String::new()));
    }
    let mut value: u64 = 0;
    for &b in token {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(ParseError::BadNumber(quote(token)));
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or_else(|| ParseError::BadNumber(quote(token)))?;
    }
    Ok(value)
}

/// Parses a signed decimal integer token (optional leading `-`).
pub fn parse_i64_token(token: &[u8]) -> Result<i64, ParseError> {
    let (negative, digits) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, token),
    };
    let magnitude =
        parse_u64_token(digits).map_err(|_| ParseError::BadSignedNumber(quote(token)))?;
    if negative {
        // -(2^63) is the one value whose magnitude does not fit in i64.
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
    .ok_or_else(|| ParseError::BadSignedNumber(quote(token)))
}

/// Parses a single-value file such as `memory.current` or `pids.current`
/// (`123\n`).
pub fn parse_single_u64(input: &[u8]) -> Result<u64, ParseError> {
    let t = trim(input);
    if t.is_empty() {
        return Err(ParseError::Empty);
    }
    parse_u64_token(t)
}

/// Parses a single signed value such as v1 `cpu.cfs_quota_us` (`-1\n`).
pub fn parse_single_i64(input: &[u8]) -> Result<i64, ParseError> {
    let t = trim(input);
    if t.is_empty() {
        return Err(ParseError::Empty);
    }
    parse_i64_token(t)
}

/// Parses a v2 limit file (`memory.max`, `pids.max`, `memory.swap.max`):
/// `max` → `None` (unlimited), otherwise the value.
pub fn parse_limit(input: &[u8]) -> Result<Option<u64>, ParseError> {
    let t = trim(input);
    if t.is_empty() {
        return Err(ParseError::Empty);
    }
    if t == b"max" {
        return Ok(None);
    }
    parse_u64_token(t).map(Some)
}

/// Values at or above this are v1's "unlimited" (`PAGE_COUNTER_MAX` pages,
/// e.g. 9223372036854771712 bytes on 4 KiB pages).
pub const V1_UNLIMITED_BYTES: u64 = 1 << 62;

/// Maps a v1 byte limit to `None` when it means "unlimited" (≥ 2^62).
pub fn v1_limit(value_bytes: u64) -> Option<u64> {
    (value_bytes < V1_UNLIMITED_BYTES).then_some(value_bytes)
}

/// Parses v1 `memory.limit_in_bytes`: a value ≥ 2^62 → `None` (unlimited).
pub fn parse_v1_limit_bytes(input: &[u8]) -> Result<Option<u64>, ParseError> {
    parse_single_u64(input).map(v1_limit)
}

/// Iterates over the lines of `input`, 1-based line numbers, skipping lines
/// that are empty after trimming.
fn lines(input: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    input
        .split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(i, l)| {
            let l = trim(l);
            (!l.is_empty()).then_some((i + 1, l))
        })
}

/// Splits on runs of ASCII spaces/tabs, skipping empty tokens.
fn tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| *b == b' ' || *b == b'\t')
        .filter(|t| !t.is_empty())
}

/// Looks up a fixed set of keys in a flat-keyed file (`key value` lines).
///
/// Returns, for each of `keys`, its value or `None` when the key is absent.
/// Unknown keys are skipped without parsing their values; extra whitespace
/// (spaces, tabs, blank lines) is tolerated. A wanted key with a missing or
/// non-numeric value is an error. If a key repeats, the last value wins.
pub fn parse_flat_keys<const N: usize>(
    input: &[u8],
    keys: &[&str; N],
) -> Result<[Option<u64>; N], ParseError> {
    let mut out = [None; N];
    let mut remaining = N;
    let mut rest = input;
    let mut line_no = 0usize;
    while !rest.is_empty() {
        line_no += 1;
        let (raw, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                rest.get(i + 1..).unwrap_or_default(),
            ),
            None => (rest, &[][..]),
        };
        rest = next;
        // Hot path: find the key and compare it, without tokenizing lines
        // whose key is not wanted.
        let line = raw.trim_ascii_start();
        let key_len = line
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .unwrap_or(line.len());
        let (key, tail) = line.split_at_checked(key_len).unwrap_or((line, &[]));
        let Some(slot) = keys.iter().position(|k| k.as_bytes() == key) else {
            continue;
        };
        let mut toks = tokens(tail);
        let Some(value) = toks.next() else {
            return Err(bad_line(
                line_no,
                "key without a value",
                line.trim_ascii_end(),
            ));
        };
        if toks.next().is_some() {
            return Err(bad_line(
                line_no,
                "expected `key value`",
                line.trim_ascii_end(),
            ));
        }
        let v = parse_u64_token(value)?;
        if let Some(o) = out.get_mut(slot) {
            if o.is_none() {
                remaining = remaining.saturating_sub(1);
            }
            *o = Some(v);
        }
        // Keys are unique in kernel output: stop once all are found.
        if remaining == 0 {
            break;
        }
    }
    Ok(out)
}

/// Like [`parse_flat_keys`], but every key must be present
/// ([`ParseError::MissingKey`] names the first one that is not).
pub fn parse_required_keys<const N: usize>(
    input: &[u8],
    keys: &[&'static str; N],
) -> Result<[u64; N], ParseError> {
    let found = parse_flat_keys(input, keys)?;
    let mut out = [0u64; N];
    for ((o, f), k) in out.iter_mut().zip(found).zip(keys) {
        *o = f.ok_or(ParseError::MissingKey(k))?;
    }
    Ok(out)
}

/// Parses v2 `io.stat` (`MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=..
/// dios=..` per device), summing bytes and operations over devices. Unknown
/// keys (`dbytes`, `dios`, io.cost debug keys) are ignored; an empty file (no
/// IO yet) is all zeros.
pub fn parse_io_stat(input: &[u8]) -> Result<IoStats, ParseError> {
    let mut io = IoStats::default();
    for (line_no, line) in lines(input) {
        let mut toks = tokens(line);
        let device = toks.next().unwrap_or_default();
        if !device.contains(&b':') {
            return Err(bad_line(line_no, "expected a `MAJ:MIN` device", line));
        }
        for tok in toks {
            let Some(eq) = tok.iter().position(|&b| b == b'=') else {
                return Err(bad_line(line_no, "expected `key=value`", line));
            };
            let (key, value) = tok.split_at(eq);
            let value = value.get(1..).unwrap_or_default();
            let field = match key {
                b"rbytes" => &mut io.read_bytes,
                b"wbytes" => &mut io.write_bytes,
                b"rios" => &mut io.read_ops,
                b"wios" => &mut io.write_ops,
                _ => continue,
            };
            *field = field.saturating_add(parse_u64_token(value)?);
        }
    }
    Ok(io)
}

/// Read and write totals of a v1 `blkio.throttle.*` file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlkioTotals {
    /// Sum of `Read` over devices.
    pub read: u64,
    /// Sum of `Write` over devices.
    pub write: u64,
}

/// Parses v1 `blkio.throttle.io_service_bytes[_recursive]` or
/// `blkio.throttle.io_serviced[_recursive]`: sums `Read` and `Write` over the
/// `MAJ:MIN Op N` device lines; the per-device `Sync`/`Async`/`Discard`/`Total`
/// lines and the final `Total N` line are not counted (that would double
/// count).
pub fn parse_blkio(input: &[u8]) -> Result<BlkioTotals, ParseError> {
    let mut totals = BlkioTotals::default();
    for (line_no, line) in lines(input) {
        let mut toks = tokens(line);
        let (Some(first), Some(second)) = (toks.next(), toks.next()) else {
            return Err(bad_line(
                line_no,
                "expected `MAJ:MIN Op N` or `Total N`",
                line,
            ));
        };
        match toks.next() {
            None if first == b"Total" => {
                // Grand total: validate, do not count.
                parse_u64_token(second)?;
            }
            Some(value) if toks.next().is_none() && first.contains(&b':') => {
                let n = parse_u64_token(value)?;
                match second {
                    b"Read" => totals.read = totals.read.saturating_add(n),
                    b"Write" => totals.write = totals.write.saturating_add(n),
                    _ => {}
                }
            }
            _ => {
                return Err(bad_line(
                    line_no,
                    "expected `MAJ:MIN Op N` or `Total N`",
                    line,
                ));
            }
        }
    }
    Ok(totals)
}

/// Parses a PSI file (`cpu.pressure`, `memory.pressure`, `io.pressure`, or
/// `/proc/pressure/*`): the `total=` of the `some` line (required) and of the
/// `full` line (absent on older kernels' CPU pressure → `None`). The `avg*`
/// fields are not parsed.
pub fn parse_pressure(input: &[u8]) -> Result<PressureStats, ParseError> {
    let mut some = None;
    let mut full = None;
    for (line_no, line) in lines(input) {
        let mut toks = tokens(line);
        let slot = match toks.next() {
            Some(b"some") => &mut some,
            Some(b"full") => &mut full,
            _ => return Err(bad_line(line_no, "expected a `some` or `full` line", line)),
        };
        let total = toks
            .find_map(|t| t.strip_prefix(b"total="))
            .ok_or_else(|| bad_line(line_no, "no `total=` field", line))?;
        *slot = Some(parse_u64_token(total)?);
    }
    Ok(PressureStats {
        some_total_us: some.ok_or(ParseError::MissingKey("some"))?,
        full_total_us: full,
    })
}

/// CFS quota over period in millicores: `quota_us × 1000 / period_us`.
/// Returns `None` for a negative quota (v1 `-1`: unlimited). A zero period is
/// an error.
pub fn cfs_millicores(quota_us: i64, period_us: u64) -> Result<Option<u64>, ParseError> {
    let Ok(quota_us) = u64::try_from(quota_us) else {
        return Ok(None);
    };
    if period_us == 0 {
        return Err(ParseError::OutOfRange {
            what: "CFS period",
            value: 0,
        });
    }
    let millicores = u128::from(quota_us) * 1000 / u128::from(period_us);
    Ok(Some(u64::try_from(millicores).unwrap_or(u64::MAX)))
}

/// Parses v2 `cpu.max` (`$QUOTA $PERIOD`, quota `max` = unlimited) into
/// millicores: `max 100000` → `None`, `50000 100000` → `Some(500)`.
pub fn parse_cpu_max(input: &[u8]) -> Result<Option<u64>, ParseError> {
    let t = trim(input);
    let mut toks = tokens(t);
    let Some(quota) = toks.next() else {
        return Err(ParseError::Empty);
    };
    let period = toks.next();
    if toks.next().is_some() {
        return Err(bad_line(1, "expected `QUOTA PERIOD`", t));
    }
    if quota == b"max" {
        if let Some(p) = period {
            parse_u64_token(p)?;
        }
        return Ok(None);
    }
    let Some(period) = period else {
        return Err(bad_line(1, "expected `QUOTA PERIOD`", t));
    };
    let quota_us = parse_u64_token(quota)?;
    let period_us = parse_u64_token(period)?;
    cfs_millicores(i64::try_from(quota_us).unwrap_or(i64::MAX), period_us)
}

/// Converts a v2 `cpu.weight` (1..=10000) to v1-style shares (2..=262144),
/// inverting the Kubernetes/runc conversion
/// `weight = 1 + ((shares − 2) × 9999) / 262142`.
///
/// That conversion maps ~26 share values onto each weight; this returns the
/// smallest of them, so converting the result back gives `weight` exactly
/// (e.g. shares 1024 → weight 39 → shares 999). Out-of-range weights are
/// clamped.
pub fn weight_to_shares(weight: u64) -> u64 {
    let w = weight.clamp(1, 10_000);
    // ceil((w − 1) × 262142 / 9999), all within u64 (≤ 2.7e9).
    2 + ((w - 1) * 262_142).div_ceil(9_999)
}

/// The Kubernetes/runc shares → weight conversion (the inverse of
/// [`weight_to_shares`]), for tests and comparisons.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9_999) / 262_142
}

/// Parses v2 `cpu.weight` (`100\n`) into shares (see [`weight_to_shares`]).
pub fn parse_cpu_weight_as_shares(input: &[u8]) -> Result<u64, ParseError> {
    let weight = parse_single_u64(input)?;
    if !(1..=10_000).contains(&weight) {
        return Err(ParseError::OutOfRange {
            what: "cpu.weight",
            value: weight,
        });
    }
    Ok(weight_to_shares(weight))
}

/// `USER_HZ`: the tick rate of v1 `cpuacct.stat`, fixed at 100 by the kernel
/// ABI whatever `CONFIG_HZ` is.
pub const USER_HZ: u64 = 100;

/// Converts `USER_HZ` ticks to nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000_000 / USER_HZ)
}

/// User and system CPU time from v1 `cpuacct.stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuacctStat {
    /// User-mode time.
    pub user_ns: u64,
    /// Kernel-mode time.
    pub system_ns: u64,
}

/// Parses v1 `cpuacct.stat` (`user N\nsystem N`, in `USER_HZ` ticks) into
/// nanoseconds.
pub fn parse_cpuacct_stat(input: &[u8]) -> Result<CpuacctStat, ParseError> {
    let [user, system] = parse_flat_keys(input, &["user", "system"])?;
    Ok(CpuacctStat {
        user_ns: ticks_to_ns(user.ok_or(ParseError::MissingKey("user"))?),
        system_ns: ticks_to_ns(system.ok_or(ParseError::MissingKey("system"))?),
    })
}

/// Parses the first pid of a `cgroup.procs` file; `None` when it lists none.
pub fn parse_first_pid(input: &[u8]) -> Result<Option<u32>, ParseError> {
    let Some((_, line)) = lines(input).next() else {
        return Ok(None);
    };
    let pid = parse_u64_token(line)?;
    u32::try_from(pid)
        .map(Some)
        .map_err(|_| ParseError::OutOfRange {
            what: "pid",
            value: pid,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_single_u64(b"123\n"), Ok(123));
        assert_eq!(parse_single_u64(b"  18446744073709551615 "), Ok(u64::MAX));
        assert!(matches!(
            parse_single_u64(b"18446744073709551616"),
            Err(ParseError::BadNumber(_))
        ));
        assert_eq!(parse_single_u64(b"\n"), Err(ParseError::Empty));
        assert!(parse_single_u64(b"-1").is_err());
        assert!(parse_single_u64(b"1 2").is_err());
        assert_eq!(parse_single_i64(b"-1\n"), Ok(-1));
        assert_eq!(parse_single_i64(b"-9223372036854775808"), Ok(i64::MIN));
        assert!(parse_single_i64(b"9223372036854775808").is_err());
        assert!(parse_single_i64(b"-").is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(b"max\n"), Ok(None));
        assert_eq!(parse_limit(b"4096\n"), Ok(Some(4096)));
        assert_eq!(parse_v1_limit_bytes(b"9223372036854771712\n"), Ok(None));
        assert_eq!(parse_v1_limit_bytes(b"536870912\n"), Ok(Some(536_870_912)));
        assert_eq!(v1_limit((1 << 62) - 1), Some((1 << 62) - 1));
    }

    #[test]
    fn flat_keys_tolerate_whitespace_and_unknown_keys() {
        let input = b"\n  a   1\nunknown garbage here\n\tb\t2  \n\n";
        assert_eq!(
            parse_flat_keys(input, &["b", "a", "c"]),
            Ok([Some(2), Some(1), None])
        );
        assert!(parse_flat_keys(b"a\n", &["a"]).is_err());
        assert!(parse_flat_keys(b"a x\n", &["a"]).is_err());
        assert!(parse_flat_keys(b"a 1 2\n", &["a"]).is_err());
        // Exact key match, not prefix.
        assert_eq!(
            parse_flat_keys(b"total_swap 5\nswap 3\n", &["swap"]),
            Ok([Some(3)])
        );
    }

    #[test]
    fn cpu_max_and_quota() {
        assert_eq!(parse_cpu_max(b"max 100000\n"), Ok(None));
        assert_eq!(parse_cpu_max(b"max\n"), Ok(None));
        assert_eq!(parse_cpu_max(b"50000 100000\n"), Ok(Some(500)));
        assert_eq!(parse_cpu_max(b"250000 100000\n"), Ok(Some(2500)));
        assert!(parse_cpu_max(b"50000 0\n").is_err());
        assert!(parse_cpu_max(b"50000\n").is_err());
        assert_eq!(cfs_millicores(-1, 100_000), Ok(None));
        assert_eq!(cfs_millicores(150_000, 100_000), Ok(Some(1500)));
    }

    #[test]
    fn weight_shares_round_trip() {
        for w in 1..=10_000 {
            assert_eq!(shares_to_weight(weight_to_shares(w)), w, "weight {w}");
        }
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(weight_to_shares(39), 999);
        for s in 2..=262_144u64 {
            let back = weight_to_shares(shares_to_weight(s));
            assert!(back <= s && s - back < 27, "shares {s} → {back}");
        }
    }

    #[test]
    fn first_pid() {
        assert_eq!(parse_first_pid(b"42\n43\n"), Ok(Some(42)));
        assert_eq!(parse_first_pid(b""), Ok(None));
        assert!(parse_first_pid(b"99999999999\n").is_err());
    }
}
