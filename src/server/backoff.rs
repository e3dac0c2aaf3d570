//! Jittered exponential backoff: the one pause every retry loop of the services takes (stream
//! followers, registration, deploy retries), so that peers coming back are not hit in lockstep.
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Pauses that double from `min` up to `max`, each drawn uniformly from the upper half of the
/// current step ("equal jitter"): never less than half the step, never more than the step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// The pause to take now; the next one is twice as long (up to `max`).
    pub fn next_pause(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_micros(random() % (spread + 1))
    }

    /// Takes the pause.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_pause()).await;
    }

    /// Back to the shortest pause (after a success).
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

/// A cheap random number (splitmix64 over the clock and a counter): jitter, not cryptography.
fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(clock);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_within_their_jitter_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        for step in [100, 200, 400, 800, 800] {
            let pause = b.next_pause();
            let step = Duration::from_millis(step);
            assert!(pause >= step / 2 && pause <= step, "{pause:?} for {step:?}");
        }
        b.reset();
        assert!(b.next_pause() <= Duration::from_millis(100));
        // Jitter: pauses of one step are not all equal.
        let pauses: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_pause())
            .collect();
        assert!(pauses.len() > 1);
    }
}
