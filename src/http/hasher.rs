//! The password-hash pool: a fixed set of OS threads (one per core) that run Argon2 checks, fed
//! by a short bounded queue. It bounds both the CPU and the memory (19 MiB per Argon2id hash)
//! that password checks can take, whatever arrives: when the queue is full a check is refused
//! at once instead of waiting. A fixed set of threads also keeps the allocator's per-thread
//! arenas (which keep freed hash buffers) to one per core. No sockets, no clock.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

pub struct HashPool {
    jobs: SyncSender<Job>,
    threads: usize,
}

impl HashPool {
    /// `threads` workers (at least 1) and room for `queue` waiting checks. The workers end
    /// when the pool is dropped.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<HashPool> {
        let threads = threads.max(1);
        let (jobs, rx) = sync_channel::<Job>(queue);
        // std Mutex: a worker holds it only while it waits for the next job, never while hashing.
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("leasedns-hash-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(HashPool { jobs, threads })
    }

    /// One worker per core the process may use.
    pub fn per_core() -> std::io::Result<HashPool> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        HashPool::new(cores, 4 * cores)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f` on a worker and wait for its result; None when the queue is full (the caller
    /// answers "busy") or the pool is gone.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.jobs.try_send(job) {
            Ok(()) => rx.await.ok(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => None,
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn never_more_than_its_threads_at_once_and_refuses_past_the_queue() {
        let pool = Arc::new(HashPool::new(2, 3).expect("pool"));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let spawn = |n: usize| {
            (0..n)
                .map(|_| {
                    let (pool, running, peak, release) = (
                        pool.clone(),
                        running.clone(),
                        peak.clone(),
                        release_rx.clone(),
                    );
                    tokio::spawn(async move {
                        pool.run(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            let _ = release.lock().expect("lock").recv();
                            running.fetch_sub(1, Ordering::SeqCst);
                            7
                        })
                        .await
                    })
                })
                .collect::<Vec<_>>()
        };
        let mut waiting = spawn(2);
        // Both workers hold a job; then three more fill the queue.
        while running.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        waiting.extend(spawn(3));
        // current_thread runtime: yielding lets the three new tasks queue their jobs first.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        while pool.jobs.try_send(Box::new(|| {})).is_ok() {}
        assert_eq!(pool.run(|| 1).await, None, "queue full: refused at once");
        for _ in 0..16 {
            let _ = release_tx.send(());
        }
        for w in waiting {
            assert_eq!(w.await.expect("task"), Some(7));
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
