//! Login throttling: failed attempts counted per email and per client IP in a fixed window.
//!
//! Hand-written because it counts *failures* only (a person who logs in fine is never
//! slowed), which generic rate limiters such as `governor` do not model. In-process state:
//! with several processes each enforces its own budget, which still bounds guessing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Entries kept before old windows are pruned: bounds memory under a spraying attack.
const PRUNE_AT: usize = 50_000;

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginThrottle {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// If any of `keys` used up its budget, how long until it may try again.
    pub fn blocked_for(&self, keys: &[&str]) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let blocked = keys
            .iter()
            .filter_map(|k| map.get(*k))
            .filter(|(n, start)| {
                *n >= self.max_failures && now.duration_since(*start) < self.window
            })
            .map(|(_, start)| self.window - now.duration_since(*start))
            .max();
        if blocked.is_some() {
            crate::metrics::login_throttled();
        }
        blocked
    }

    pub fn record_failure(&self, keys: &[&str]) {
        crate::metrics::login_failure();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= PRUNE_AT {
            let window = self.window;
            map.retain(|_, (_, start)| now.duration_since(*start) < window);
        }
        for k in keys {
            let e = map.entry((*k).to_owned()).or_insert((0, now));
            if now.duration_since(e.1) >= self.window {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }

    pub fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_budget_and_clears() {
        let t = LoginThrottle::new(2, Duration::from_secs(60));
        t.record_failure(&["a", "ip"]);
        assert!(t.blocked_for(&["a", "ip"]).is_none());
        t.record_failure(&["a", "ip"]);
        assert!(t.blocked_for(&["a"]).is_some());
        assert!(
            t.blocked_for(&["b", "ip"]).is_some(),
            "the IP budget is shared"
        );
        t.clear("a");
        assert!(t.blocked_for(&["a"]).is_none());
    }

    #[test]
    fn window_expires() {
        let t = LoginThrottle::new(1, Duration::from_millis(1));
        t.record_failure(&["a"]);
        std::thread::sleep(Duration::from_millis(5));
        assert!(t.blocked_for(&["a"]).is_none());
    }
}
