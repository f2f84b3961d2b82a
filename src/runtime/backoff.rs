//! Retry schedules: watch streams, and failed reconciles.

use std::time::Duration;

use rand::Rng;

/// Backoff of every watch stream and of each controller's merged trigger stream:
/// 250 ms doubling up to 5 s (±10% jitter), back to 250 ms after any event.
///
/// kube-runtime's default (0.8 s doubling to 30 s, jittered up to about twice that,
/// reset only after 120 s without error) stalled the Connector controller for up to
/// two minutes after an apiserver restart: its five watches fail together, their
/// errors pile onto the one shared trigger backoff, and while that sleeps no watch is
/// polled, so nothing is relisted (e2e `faults.rs`, apiserver restart test).
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    pub const MIN: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay.mul_f64(1.0 + rand::rng().random_range(-0.1..=0.1)))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

/// Pure schedule: `failures == 0` gives the interval; otherwise min * 2^(n-1) capped at
/// the interval; `jitter` in [-0.1, 0.1] spreads the load.
pub fn backoff_delay(failures: u32, min: Duration, interval: Duration, jitter: f64) -> Duration {
    let base = if failures == 0 {
        interval
    } else {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        min.saturating_mul(factor).min(interval)
    };
    base.mul_f64(1.0 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_backoff_is_capped_and_resets() {
        use kube::runtime::utils::Backoff;
        let mut backoff = WatchBackoff::default();
        let delays: Vec<Duration> = backoff.by_ref().take(10).collect();
        assert!(delays[0] <= WatchBackoff::MIN.mul_f64(1.1));
        assert!(delays.iter().all(|d| *d <= WatchBackoff::MAX.mul_f64(1.1)));
        assert!(delays[9] >= WatchBackoff::MAX.mul_f64(0.9), "{delays:?}");
        backoff.reset();
        assert!(
            backoff
                .next()
                .is_some_and(|d| d <= WatchBackoff::MIN.mul_f64(1.1))
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let min = Duration::from_secs(10);
        let interval = Duration::from_secs(300);
        let delays: Vec<u64> = (0..8)
            .map(|n| backoff_delay(n, min, interval, 0.0).as_secs())
            .collect();
        assert_eq!(delays, [300, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff_delay(0, min, interval, 0.1).as_secs(), 330);
    }
}
