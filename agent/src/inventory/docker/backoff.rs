//! Exponential reconnect backoff with jitter, so many agents that lost the
//! same daemon (or a restarted host) do not retry in lockstep. The jitter
//! comes from the clock's nanoseconds: cheap, and random enough here.

use std::time::Duration;

/// Delays that double from `min` up to `max`; each delay handed out is
/// between half and all of the current step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
    seed: u64,
}

impl Backoff {
    /// Starts at `min`, never exceeds `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            step: min,
            seed: clock_nanos(),
        }
    }

    /// The next delay to wait, then doubles the step (capped).
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(self.unit())
    }

    /// The step the next delay is taken from.
    #[cfg(test)]
    pub fn step(&self) -> Duration {
        self.step
    }

    /// Back to `min` after a connection that worked.
    pub fn reset(&mut self) {
        self.step = self.min;
    }

    /// A number in `[0, 1)`: the clock's nanoseconds stirred with a
    /// splitmix64 step, so two calls in the same nanosecond still differ.
    fn unit(&mut self) -> f64 {
        self.seed = self
            .seed
            .wrapping_add(clock_nanos())
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits as a fraction of 2^53.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn clock_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap_and_resets() {
        let min = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        let mut b = Backoff::new(min, max);
        let mut delays = Vec::new();
        for _ in 0..12 {
            let step = b.step();
            let d = b.next_delay();
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} outside [{step:?}/2, {step:?}]"
            );
            delays.push(d);
        }
        assert_eq!(b.step(), max);
        assert!(delays[11] >= max / 2);
        // Jitter: the capped delays are not all equal.
        let capped = &delays[8..];
        assert!(capped.iter().any(|d| *d != capped[0]), "{capped:?}");
        b.reset();
        assert_eq!(b.step(), min);
        assert!(b.next_delay() <= min);
    }
}
