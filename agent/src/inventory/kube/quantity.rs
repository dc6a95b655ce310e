//! Kubernetes resource quantities (`250m`, `0.5`, `128Mi`, `1e9`, `1.5Gi`)
//! turned into the integers upid stores: CPU in millicores, memory in bytes.
//!
//! The grammar is the API server's (`k8s.io/apimachinery/pkg/api/resource`):
//! a signed decimal number followed by a binary suffix (`Ki` … `Ei`), a
//! decimal suffix (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal
//! exponent (`e3`, `E-2`). Like the API server's `Value()` and
//! `MilliValue()`, a fraction is rounded up to the next integer. Arithmetic
//! is exact on integers (no floating point); anything that does not fit the
//! grammar, is negative or overflows `u64` is `None`.

/// CPU in millicores: `"250m"` → 250, `"1"` → 1000, `"0.5"` → 500.
pub fn cpu_millicores(quantity: &str) -> Option<u64> {
    scaled(quantity, 3)
}

/// Memory in bytes: `"128Mi"` → 134217728, `"500M"` → 500000000, `"1e9"`.
pub fn memory_bytes(quantity: &str) -> Option<u64> {
    scaled(quantity, 0)
}

/// Most significant digits kept from a mantissa; more cannot change a
/// value that has to fit a `u64` after scaling (extra digits are checked
/// to be zeros or treated as a round-up).
const MAX_DIGITS: usize = 36;

/// `quantity × 10^extra_exponent`, rounded up; `None` for bad input.
fn scaled(quantity: &str, extra_exponent: i32) -> Option<u64> {
    let q = quantity.trim();
    let q = q.strip_prefix('+').unwrap_or(q);
    if q.starts_with('-') {
        return None;
    }
    let number_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(number_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if frac_part.contains('.') {
        return None;
    }
    let (binary_power, decimal_exponent) = suffix_scale(suffix)?;

    // The mantissa as an integer plus a power of ten, skipping leading zeros
    // so long zero-padded inputs stay exact.
    let digits = int_part.bytes().chain(frac_part.bytes());
    let mut mantissa: u128 = 0;
    let mut kept = 0usize;
    let mut dropped_nonzero = false;
    let mut dropped_digits: i64 = 0;
    for d in digits {
        let v = u128::from(d - b'0');
        if kept == 0 && v == 0 {
            continue;
        }
        if kept < MAX_DIGITS {
            mantissa = mantissa * 10 + v;
            kept += 1;
        } else {
            dropped_digits += 1;
            dropped_nonzero |= v != 0;
        }
    }
    // Digits dropped from the fraction's end only lower precision; the
    // value is `mantissa × 10^(dropped − frac_len)` (+ a bit when a dropped
    // digit was non-zero, which rounding up accounts for below).
    if mantissa == 0 && !dropped_nonzero {
        return Some(0);
    }
    let frac_len = i64::try_from(frac_part.len()).ok()?;
    let exponent =
        i64::from(decimal_exponent) + i64::from(extra_exponent) + dropped_digits - frac_len;
    let mantissa = mantissa.checked_mul(1u128.checked_shl(binary_power)?)?;
    let value = if exponent >= 0 {
        let factor = 10u128.checked_pow(u32::try_from(exponent).ok()?)?;
        let v = mantissa.checked_mul(factor)?;
        if dropped_nonzero {
            v.checked_add(1)?
        } else {
            v
        }
    } else {
        let divisor = u32::try_from(-exponent)
            .ok()
            .and_then(|e| 10u128.checked_pow(e));
        match divisor {
            Some(divisor) => {
                let whole = mantissa / divisor;
                let rest = mantissa % divisor != 0 || dropped_nonzero;
                if rest { whole + 1 } else { whole }
            }
            // Smaller than any representable unit: rounds up to 1 unless 0.
            None => u128::from(mantissa != 0 || dropped_nonzero),
        }
    };
    u64::try_from(value).ok()
}

/// `(power of two, power of ten)` a suffix multiplies by.
fn suffix_scale(suffix: &str) -> Option<(u32, i32)> {
    let scale = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (0, exp.parse::<i32>().ok().filter(|e| e.abs() <= 1000)?)
        }
    };
    Some(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_millicores() {
        let cases = [
            ("250m", Some(250)),
            ("1", Some(1000)),
            ("0.5", Some(500)),
            ("2", Some(2000)),
            ("100m", Some(100)),
            (".1", Some(100)),
            ("1.", Some(1000)),
            ("+1", Some(1000)),
            ("1500m", Some(1500)),
            // Sub-millicore values round up, as MilliValue() does.
            ("0.0001", Some(1)),
            // Nano and micro units (metrics-server style) round up too.
            ("1u", Some(1)),
            ("1500000n", Some(2)),
            ("1000000n", Some(1)),
            ("2k", Some(2_000_000)),
            ("1e3", Some(1_000_000)),
            ("1e-3", Some(1)),
            ("0", Some(0)),
            ("0m", Some(0)),
            ("1Ki", Some(1_024_000)),
        ];
        for (q, want) in cases {
            assert_eq!(cpu_millicores(q), want, "{q}");
        }
    }

    #[test]
    fn memory_quantities_in_bytes() {
        let cases = [
            ("128Mi", Some(134_217_728)),
            ("1Gi", Some(1_073_741_824)),
            ("500M", Some(500_000_000)),
            ("1e9", Some(1_000_000_000)),
            ("129M", Some(129_000_000)),
            ("1E9", Some(1_000_000_000)),
            ("64Ki", Some(65_536)),
            ("1.5Gi", Some(1_610_612_736)),
            ("0.5Ki", Some(512)),
            ("1k", Some(1000)),
            ("123", Some(123)),
            ("1E", Some(1_000_000_000_000_000_000)),
            ("8Ei", Some(1 << 63)),
            ("16Ei", None),   // 2^64 does not fit u64
            ("1.1", Some(2)), // rounded up to whole bytes
            ("500m", Some(1)),
            ("0.000000000000000000000000000000000000000000001", Some(1)),
            (
                "000000000000000000000000000000000000000000000000001Mi",
                Some(1 << 20),
            ),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
        ];
        for (q, want) in cases {
            assert_eq!(memory_bytes(q), want, "{q}");
        }
    }

    #[test]
    fn garbage_is_none() {
        for q in [
            "", " ", "Mi", "-1", "-128Mi", "1.2.3", "12MB", "1mi", "0x10", "1e", "1e+", "1e1.5",
            "abc", "1 Gi", "∞", "1e99999", ".", "..", "1Gi ", "NaN",
        ] {
            // Surrounding whitespace is trimmed, inner text must be exact.
            let expect_some = q == "1Gi ";
            assert_eq!(memory_bytes(q).is_some(), expect_some, "memory {q:?}");
            assert_eq!(cpu_millicores(q).is_some(), expect_some, "cpu {q:?}");
        }
    }

    #[test]
    fn huge_exponents_do_not_overflow() {
        assert_eq!(memory_bytes("1e19"), Some(10_000_000_000_000_000_000));
        assert_eq!(memory_bytes("1e20"), None);
        assert_eq!(memory_bytes("1e-1000"), Some(1));
        assert_eq!(memory_bytes("0e1000"), Some(0));
        assert_eq!(memory_bytes("1e1000"), None);
    }
}
