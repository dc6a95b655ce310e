//! Comparing renderings (`Debug` output, rows as text) that must be equal
//! but for the last bits of floating-point sums, shared by the analysis,
//! store and retention tests (`mod float_eq;`).

/// Splits a Debug rendering into text and the floating-point numbers in it.
fn tokens(s: &str) -> Vec<Result<f64, String>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            || (chars[i] == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit));
        let after_word = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if starts_number && !after_word {
            let mut j = i + 1;
            while j < chars.len()
                && (chars[j].is_ascii_digit()
                    || chars[j] == '.'
                    || chars[j] == 'e'
                    || (chars[j] == '-' && chars[j - 1] == 'e'))
            {
                j += 1;
            }
            let number: String = chars[i..j].iter().collect();
            if (number.contains('.') || number.contains('e'))
                && let Ok(v) = number.parse::<f64>()
            {
                out.push(Err(std::mem::take(&mut text)));
                out.push(Ok(v));
                i = j;
                continue;
            }
            text.push_str(&number);
            i = j;
            continue;
        }
        text.push(chars[i]);
        i += 1;
    }
    out.push(Err(text));
    out
}

/// Asserts `a` and `b` are the same text with the same numbers, floats
/// equal to 1e-9 relative; the failure names `what`, the first differing
/// token, and both renderings under `labels`.
pub fn assert_nearly_same(what: &str, labels: (&str, &str), a: &str, b: &str) {
    let (ta, tb) = (tokens(a), tokens(b));
    let same = ta.len() == tb.len()
        && ta.iter().zip(&tb).all(|(x, y)| match (x, y) {
            (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-3),
            (Err(x), Err(y)) => x == y,
            _ => false,
        });
    if !same {
        let first = ta.iter().zip(&tb).position(|(x, y)| x != y).unwrap_or(0);
        panic!(
            "{what}: {} and {} differ near token {first}: {:?} vs {:?}\n{}: {a}\n{}: {b}",
            labels.0,
            labels.1,
            ta.get(first),
            tb.get(first),
            labels.0,
            labels.1
        );
    }
}
