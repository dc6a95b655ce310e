//! Exponential backoff with full jitter for reconnects, so a fleet of agents
//! that lost the collector at once does not come back at once.

use std::time::Duration;

/// Reconnect delays: `initial × 2^n`, capped at `max`, each drawn uniformly
/// from `[0, that]` ("full jitter").
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff from `initial` up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32);
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// The next delay, growing with each call until [`Backoff::reset`].
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64: jitter only, no need for a cryptographic source.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let fraction = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(fraction).max(Duration::from_millis(10))
    }

    /// Back to the initial delay after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut ceilings = Vec::new();
        for n in 0..12u32 {
            let d = b.next_delay();
            let ceiling = Duration::from_millis(100)
                .saturating_mul(1 << n)
                .min(Duration::from_secs(5));
            assert!(d <= ceiling, "attempt {n}: {d:?} > {ceiling:?}");
            ceilings.push(d);
        }
        // Jittered: not all late delays are equal to the cap.
        assert!(ceilings[8..].iter().any(|d| *d < Duration::from_secs(5)));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
