//! Password hashing: argon2id with the crate's defaults, which are OWASP's recommendation
//! (19 MiB, 2 iterations, 1 lane). Always off the async executor, on [`HashPool`]'s threads.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordVerifier};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::domain::Password;

pub fn hash(password: &Password) -> Result<String, HashError> {
    Ok(Argon2::default()
        .hash_password(password.expose().as_bytes())?
        .to_string())
}

pub fn verify(candidate: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(candidate.as_bytes(), phc)
        .is_ok()
}

/// Hash of a password nobody knows: verified when the email is unknown, so a wrong email
/// costs the same time as a wrong password.
pub fn dummy_hash() -> String {
    let p = Password::generated(crate::domain::token::random_token());
    hash(&p).expect("argon2 with default parameters")
}

/// One hash off the executor, for the command line (one at a time: no pool needed).
pub async fn hash_blocking(password: Password) -> anyhow::Result<String> {
    Ok(actix_web::rt::task::spawn_blocking(move || hash(&password)).await??)
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every worker is busy and the queue is full: answer 503 with `Retry-After`.
    #[error("too many password checks at once")]
    Busy,
    #[error("password hashing failed")]
    Argon2(#[from] argon2::password_hash::Error),
    /// The pool's threads are gone or one panicked.
    #[error("password hashing failed: {0}")]
    Pool(&'static str),
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads that run every argon2 hash and verification of the server, with a
/// bounded queue in front.
///
/// **Why memory stays bounded.** Each argon2 run allocates its 19 MiB of blocks when it
/// starts and frees them when it ends (`argon2::Argon2::hash_password_into`). Before this
/// pool, each sign-up or login ran on tokio's blocking pool, which grows to 512 threads: 96
/// concurrent sign-ups held 96 × 19 MiB at once (RSS 32 -> 1,823 MiB). Here at most `workers`
/// runs exist at a time: the peak is about `workers` × 19 MiB (38 MiB on two cores) plus the
/// queue's few bytes, however many requests arrive. A request beyond `workers + queue` is
/// refused at once ([`HashError::Busy`]) instead of waiting in memory.
///
/// Freed is not yet returned, though: glibc raises its mmap threshold to the size of the
/// first large block freed, after which 19 MiB blocks come from the threads' arenas, and
/// fragmentation there kept growing RSS (measured: 96-way sign-up bursts on two workers took
/// the debug binary from 18 to 196, then 353 MiB after three bursts, in six 38-58 MiB arena
/// heaps). So the pool pins the threshold (`M_MMAP_THRESHOLD`, 4 MiB): every argon2 block is
/// its own mapping, unmapped when the run ends, and RSS goes back down after each burst.
///
/// A queued run holds its admission permit until it has *finished* (the permit moves into the
/// job), so a client that disconnects cannot free a slot while its hash still runs.
pub struct HashPool {
    admit: Arc<Semaphore>,
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl HashPool {
    /// `workers` threads (at least one); up to `queue` more runs may wait for one.
    pub fn new(workers: usize, queue: usize) -> Self {
        return_large_blocks_to_the_os();
        let workers = workers.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    // Hold the lock only to take a job, never while running it.
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // the pool was dropped
                    }
                })
                .expect("spawning a password hashing thread");
        }
        HashPool {
            admit: Arc::new(Semaphore::new(workers + queue)),
            jobs: Mutex::new(tx),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit: OwnedSemaphorePermit = self
            .admit
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::Busy)?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let out = f();
            drop(permit);
            let _ = tx.send(out);
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| HashError::Pool("hashing threads are gone"))?;
        rx.await
            .map_err(|_| HashError::Pool("a hashing thread panicked"))
    }

    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        self.run(move || hash(&password)).await?
    }

    pub async fn verify(&self, candidate: String, phc: String) -> Result<bool, HashError> {
        self.run(move || verify(&candidate, &phc)).await
    }
}

/// Allocations of at least this size are mapped on their own and unmapped when freed.
const MMAP_THRESHOLD_BYTES: i32 = 4 << 20;

/// See [`HashPool`]: a fixed mmap threshold (glibc adjusts it upwards by default).
#[allow(unsafe_code)]
fn return_large_blocks_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes a malloc tuning parameter; glibc documents it as
            // safe to call at any time, from any thread.
            let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
            if ok != 1 {
                tracing::warn!(
                    "mallopt(M_MMAP_THRESHOLD) failed: argon2 memory may be kept after bursts"
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn runs_at_most_workers_at_once_and_refuses_beyond_the_queue() {
        let pool = Arc::new(HashPool::new(2, 3));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        let mut done = 0;
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => done += 1,
                Err(HashError::Busy) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2, "two workers");
        assert_eq!(done, 5, "two running + three queued");
        assert_eq!(busy, 15);
        assert!(pool.run(|| ()).await.is_ok(), "free again afterwards");
    }

    #[tokio::test]
    async fn hashes_and_verifies() {
        let pool = HashPool::new(1, 0);
        let phc = pool
            .hash(Password::generated("correct horse battery".into()))
            .await
            .unwrap();
        assert!(pool
            .verify("correct horse battery".into(), phc.clone())
            .await
            .unwrap());
        assert!(!pool.verify("wrong".into(), phc).await.unwrap());
    }
}
