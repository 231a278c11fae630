//! Throttles for the two doors strangers can knock on: logins and sign-ups.
//!
//! Hand-written because logins count *failures* only (a person who logs in fine is never
//! slowed), which generic rate limiters such as `governor` do not model. In-process state:
//! with several processes each enforces its own budget, which still bounds guessing.
//!
//! **An attempt is counted before the password is hashed, and given back if it succeeded.**
//! Checking first and recording the failure after argon2 let 40 parallel wrong passwords all
//! through a budget of 5: every one of them was checked before any had failed. Now the check
//! and the count are one step under one lock ([`Counters::try_take`]), so at most the budget
//! ever reaches argon2 at once, however many arrive together.
//!
//! **Logins are counted three ways** (fixed windows of `login_window`):
//! - per (email, client address): the tight budget (`login_max_failures`, 5). Guessing one
//!   account's password from one place stops here;
//! - per email, and per client address: [`LOOSE_FACTOR`] times that. An attacker elsewhere
//!   who fails for your email uses up only *their* pair budget, so your own login from your
//!   address still works (until the attacker has spread [`LOOSE_FACTOR`] pairs' worth of
//!   failures over many addresses, which bounds a distributed attack on one account); and a
//!   shared address (office NAT, a reverse proxy not listed in `trusted_proxies`) is not shut
//!   by five mistakes of one of its users, while one address spraying many emails is.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The per-email and per-address budgets are this many times the per-pair budget.
pub const LOOSE_FACTOR: u32 = 10;

/// Entries kept before expired windows are pruned: bounds memory under a spraying attack.
const PRUNE_AT: usize = 50_000;

/// Fixed-window counters by key.
struct Counters {
    window: Duration,
    map: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Counters {
    fn new(window: Duration) -> Self {
        Counters {
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// All or nothing: if every key is under its limit, counts one against each; otherwise
    /// counts nothing and says how long until the longest-blocked key has room again.
    fn try_take(&self, keys: &[(&str, u32)]) -> Result<(), Duration> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= PRUNE_AT {
            let window = self.window;
            map.retain(|_, (_, start)| now.duration_since(*start) < window);
        }
        let live = |entry: Option<&(u32, Instant)>| match entry {
            Some((n, start)) if now.duration_since(*start) < self.window => Some((*n, *start)),
            _ => None,
        };
        let wait = keys
            .iter()
            .filter_map(|(k, limit)| {
                let (n, start) = live(map.get(*k))?;
                (n >= *limit).then(|| self.window.saturating_sub(now.duration_since(start)))
            })
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        for (k, _) in keys {
            let e = map.entry((*k).to_owned()).or_insert((0, now));
            if now.duration_since(e.1) >= self.window {
                *e = (0, now);
            }
            e.0 += 1;
        }
        Ok(())
    }

    /// Undoes one [`Counters::try_take`] on `keys`.
    fn give_back(&self, keys: &[&str]) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            if let Some(e) = map.get_mut(*k) {
                e.0 = e.0.saturating_sub(1);
                if e.0 == 0 {
                    map.remove(*k);
                }
            }
        }
    }

    fn forget(&self, key: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

pub struct LoginThrottle {
    max_failures: u32,
    counters: Counters,
}

/// A login attempt that has been counted. Report how it ended: [`LoginThrottle::succeeded`]
/// or [`LoginThrottle::abandoned`] give the count back; a failure keeps it (drop it).
#[must_use]
pub struct LoginAttempt {
    pair: String,
    email: String,
    address: String,
}

impl LoginAttempt {
    fn keys(&self) -> [&str; 3] {
        [&self.pair, &self.email, &self.address]
    }
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginThrottle {
            max_failures,
            counters: Counters::new(window),
        }
    }

    /// Counts an attempt for `email` from `address` before its password is checked, or says
    /// how long to wait if any of its three budgets is used up.
    pub fn begin(&self, email: &str, address: Option<IpAddr>) -> Result<LoginAttempt, Duration> {
        let address = address.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let attempt = LoginAttempt {
            pair: format!("pair:{email}|{address}"),
            email: format!("email:{email}"),
            address: format!("addr:{address}"),
        };
        let loose = self.max_failures.saturating_mul(LOOSE_FACTOR);
        self.counters
            .try_take(&[
                (&attempt.pair, self.max_failures),
                (&attempt.email, loose),
                (&attempt.address, loose),
            ])
            .inspect_err(|_| crate::metrics::login_throttled())?;
        Ok(attempt)
    }

    /// The right password: the attempt is not a failure, and earlier failures of this pair
    /// (typos by the account's owner) are forgotten. The email's and the address's counts
    /// keep their earlier failures, so logging in to one's own account cannot reset the
    /// budget one is spending on someone else's.
    pub fn succeeded(&self, attempt: LoginAttempt) {
        self.counters.give_back(&attempt.keys());
        self.counters.forget(&attempt.pair);
    }

    /// The password was never checked (the server was too busy): not a failure.
    pub fn abandoned(&self, attempt: LoginAttempt) {
        self.counters.give_back(&attempt.keys());
    }
}

/// Sign-ups per client address per hour. Each sign-up that gets as far as hashing its
/// password counts (whether or not its email turns out to be taken: each one costs an argon2 hash); a form refused before
/// that (invalid email, weak password) does not.
pub struct SignupThrottle {
    max: u32,
    counters: Counters,
}

#[must_use]
pub struct SignupAttempt(String);

impl SignupThrottle {
    pub fn new(max_per_hour: u32) -> Self {
        Self::with_window(max_per_hour, Duration::from_secs(3600))
    }

    pub fn with_window(max: u32, window: Duration) -> Self {
        SignupThrottle {
            max,
            counters: Counters::new(window),
        }
    }

    pub fn begin(&self, address: Option<IpAddr>) -> Result<SignupAttempt, Duration> {
        let key = format!(
            "signup:{}",
            address.map_or_else(|| "unknown".to_owned(), |a| a.to_string())
        );
        self.counters.try_take(&[(&key, self.max)])?;
        Ok(SignupAttempt(key))
    }

    /// The password was never hashed (the server was too busy): the attempt does not count.
    pub fn abandoned(&self, attempt: SignupAttempt) {
        self.counters.give_back(&[&attempt.0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_pair_budget_blocks_only_that_pair() {
        let t = LoginThrottle::new(2, Duration::from_secs(60));
        drop(t.begin("ann", ip("1.1.1.1")).unwrap());
        drop(t.begin("ann", ip("1.1.1.1")).unwrap());
        assert!(t.begin("ann", ip("1.1.1.1")).is_err(), "pair used up");
        assert!(t.begin("ann", ip("2.2.2.2")).is_ok(), "ann elsewhere");
        assert!(
            t.begin("bob", ip("1.1.1.1")).is_ok(),
            "others at that address"
        );
    }

    #[test]
    fn the_loose_budgets_block_spraying_and_distributed_guessing() {
        let t = LoginThrottle::new(1, Duration::from_secs(60));
        for i in 0..LOOSE_FACTOR {
            drop(t.begin(&format!("user{i}"), ip("1.1.1.1")).unwrap());
        }
        assert!(
            t.begin("someone", ip("1.1.1.1")).is_err(),
            "address used up"
        );
        for i in 0..LOOSE_FACTOR {
            drop(t.begin("ann", ip(&format!("2.2.2.{i}"))).unwrap());
        }
        assert!(t.begin("ann", ip("3.3.3.3")).is_err(), "email used up");
    }

    #[test]
    fn success_and_abandon_give_the_attempt_back() {
        let t = LoginThrottle::new(2, Duration::from_secs(60));
        drop(t.begin("ann", ip("1.1.1.1")).unwrap());
        let a = t.begin("ann", ip("1.1.1.1")).unwrap();
        t.succeeded(a);
        for _ in 0..2 {
            let a = t.begin("ann", ip("1.1.1.1")).unwrap();
            t.abandoned(a);
        }
        drop(t.begin("ann", ip("1.1.1.1")).unwrap());
        drop(t.begin("ann", ip("1.1.1.1")).unwrap());
        assert!(t.begin("ann", ip("1.1.1.1")).is_err());
    }

    #[test]
    fn a_refused_attempt_counts_nothing() {
        let t = LoginThrottle::new(1, Duration::from_secs(60));
        drop(t.begin("ann", ip("1.1.1.1")).unwrap());
        for _ in 0..100 {
            assert!(t.begin("ann", ip("1.1.1.1")).is_err());
        }
        for i in 0..LOOSE_FACTOR - 1 {
            drop(t.begin(&format!("u{i}"), ip("1.1.1.1")).unwrap());
        }
    }

    #[test]
    fn window_expires() {
        let t = LoginThrottle::new(1, Duration::from_millis(1));
        drop(t.begin("a", None).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        assert!(t.begin("a", None).is_ok());
    }

    #[test]
    fn signups_per_address() {
        let t = SignupThrottle::new(2);
        drop(t.begin(ip("1.1.1.1")).unwrap());
        let a = t.begin(ip("1.1.1.1")).unwrap();
        assert!(t.begin(ip("1.1.1.1")).is_err());
        assert!(t.begin(ip("2.2.2.2")).is_ok());
        t.abandoned(a);
        assert!(t.begin(ip("1.1.1.1")).is_ok());
    }

    #[test]
    fn concurrent_attempts_never_exceed_the_budget() {
        let t = std::sync::Arc::new(LoginThrottle::new(5, Duration::from_secs(60)));
        let admitted: usize = (0..40)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || t.begin("ann", ip("1.1.1.1")).is_ok() as usize)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(admitted, 5);
    }
}
