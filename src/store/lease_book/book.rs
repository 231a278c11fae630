//! The in-memory side of budget leases: this process's slices, and the holds served from
//! them under one mutex (see the parent module for the design).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A slice covers this many holds of the request that asked for it...
pub(super) const SLICE_HOLDS: i64 = 64;
/// ...but at most this share of the remaining headroom (key day, key month, account).
pub(super) const HEADROOM_SHARE: i64 = 8;
/// Unused slices go back after this long without a request on them.
pub const IDLE_RETURN: Duration = Duration::from_millis(200);
/// A lease whose free part falls under 1/this of its last grant is topped up in the
/// background, so requests rarely wait for a top-up.
pub(super) const LOW_WATER: i64 = 4;
/// Empty leases are forgotten after this long.
pub(super) const FORGET_AFTER: Duration = Duration::from_secs(60);

/// (key, day, month): a slice counts in the day and month it was taken in.
pub(super) type Bucket = (i64, i64, i64);

/// This process's leases, in memory.
#[derive(Default)]
pub struct LeaseBook {
    pub(super) leases: Mutex<HashMap<Bucket, Lease>>,
}

pub(super) struct Lease {
    pub(super) account_id: i64,
    /// The `leases` row (None until the first grant).
    pub(super) id: Option<i64>,
    /// Leased and not yet charged, as far as this process's settled batches go.
    pub(super) granted: i64,
    /// Holds of requests in flight (their usage not yet committed).
    pub(super) in_flight: i64,
    pub(super) last_grant: i64,
    pub(super) used_at: Instant,
    /// One top-up at a time per lease.
    pub(super) refill: Arc<tokio::sync::Mutex<()>>,
    /// A background top-up is running.
    pub(super) refilling: bool,
}

impl Lease {
    pub(super) fn free(&self) -> i64 {
        self.granted - self.in_flight
    }
}

/// A part of a slice taken out of the book, to give back to the database.
pub(super) struct Detached {
    pub(super) bucket: Bucket,
    pub(super) account_id: i64,
    pub(super) id: i64,
    pub(super) amount: i64,
}

pub(super) enum Take {
    /// Served from the slice: the lease's row id, and whether to top up in the background.
    Taken(i64, bool),
    /// Not enough free: the lease's top-up lock.
    Short(Arc<tokio::sync::Mutex<()>>),
}

impl LeaseBook {
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<Bucket, Lease>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `hold` from the slice if its free part covers `need` (the hold, or 1 for a free
    /// request: the account must still have something spendable).
    pub(super) fn take(&self, bucket: Bucket, account_id: i64, hold: i64, need: i64) -> Take {
        let mut leases = self.lock();
        let lease = leases.entry(bucket).or_insert_with(|| Lease {
            account_id,
            id: None,
            granted: 0,
            in_flight: 0,
            last_grant: 0,
            used_at: Instant::now(),
            refill: Arc::default(),
            refilling: false,
        });
        lease.used_at = Instant::now();
        match lease.id {
            Some(id) if lease.free() >= need => {
                lease.in_flight += hold;
                let low = lease.free() < lease.last_grant / LOW_WATER;
                let prefetch = low && !lease.refilling;
                lease.refilling |= prefetch;
                Take::Taken(id, prefetch)
            }
            _ => Take::Short(lease.refill.clone()),
        }
    }

    pub(super) fn free(&self, bucket: Bucket) -> i64 {
        self.lock().get(&bucket).map_or(0, Lease::free)
    }

    pub(super) fn lease_id(&self, bucket: Bucket) -> Option<i64> {
        self.lock().get(&bucket).and_then(|l| l.id)
    }

    pub(super) fn granted(&self, bucket: Bucket, id: i64, amount: i64) {
        if let Some(l) = self.lock().get_mut(&bucket).filter(|_| amount > 0) {
            l.id = Some(id);
            l.granted += amount;
            l.last_grant = amount;
        }
    }

    pub(super) fn refilled(&self, bucket: Bucket) {
        if let Some(l) = self.lock().get_mut(&bucket) {
            l.refilling = false;
        }
    }

    /// Takes the free part of every lease `pick` selects out of the book (nothing can hold
    /// against it any more), to give it back.
    pub(super) fn detach(&self, mut pick: impl FnMut(&Bucket, &Lease) -> bool) -> Vec<Detached> {
        let mut out = Vec::new();
        let now = Instant::now();
        let mut leases = self.lock();
        for (bucket, lease) in leases.iter_mut() {
            let free = lease.free();
            if free > 0 && pick(bucket, lease) {
                if let Some(id) = lease.id {
                    lease.granted -= free;
                    out.push(Detached {
                        bucket: *bucket,
                        account_id: lease.account_id,
                        id,
                        amount: free,
                    });
                }
            }
        }
        leases.retain(|_, l| {
            l.granted > 0 || l.in_flight > 0 || now.duration_since(l.used_at) < FORGET_AFTER
        });
        out
    }

    /// A give-back failed: the part is this process's again.
    pub(super) fn reattach(&self, d: &Detached) {
        if let Some(l) = self.lock().get_mut(&d.bucket) {
            l.granted += d.amount;
        }
    }

    /// Leased but not held, per account: what this process could give back now.
    pub fn unused(&self, account_id: i64) -> i64 {
        self.lock()
            .values()
            .filter(|l| l.account_id == account_id)
            .map(|l| l.free().max(0))
            .sum()
    }
}
