//! Threads kept for evaluating checks, so that a probe's CEL runs off the async
//! workers without starting a thread per evaluation.
//!
//! A thread per evaluation (with a 16 MiB stack) and a worker blocked in
//! `block_in_place` while it ran made thread switches the largest item of the
//! operator's CPU profile at 10,000 Connectors; with kept threads its CPU per
//! reconcile at rest went from 0.68 to 0.38 ms (docs/benchmarks.md, seventh session).
//! Here a job goes to an idle pool thread (a new one only when none is idle, up to a
//! limit, beyond that it queues) and the caller awaits the answer without blocking its
//! worker. Threads idle for [`IDLE_EXIT`] exit, so a quiet operator keeps none.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::bounds::JobFailure;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long a pool thread waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// A pool of threads with one stack size.
pub(crate) struct EnginePool {
    name: &'static str,
    stack_size: usize,
    max_threads: usize,
    state: Mutex<PoolState>,
    work: Condvar,
}

struct PoolState {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

impl EnginePool {
    pub(crate) const fn new(name: &'static str, stack_size: usize, max_threads: usize) -> Self {
        EnginePool {
            name,
            stack_size,
            max_threads,
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
            }),
            work: Condvar::new(),
        }
    }

    /// Runs `f` on a pool thread and waits for it at most `wait`, without blocking
    /// the caller's thread. A panic in `f` is an error; so is the wait running out
    /// (a running job is left to finish on its own: callers bound their work so that
    /// it ends soon after; a job still queued then is skipped).
    pub(crate) async fn run<T, F>(
        &'static self,
        what: &str,
        wait: Duration,
        f: F,
    ) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move || {
            // Its caller stopped waiting while it was queued: nobody wants the answer.
            if tx.is_closed() {
                return;
            }
            let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(f)));
        }))
        .map_err(|e| JobFailure::Start(e).describe(what))?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Err(_) => Err(JobFailure::Deadline(wait).describe(what)),
            Ok(Ok(Err(_)) | Err(_)) => Err(JobFailure::Died.describe(what)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job` and starts a thread when every running one is busy.
    fn submit(&'static self, job: Job) -> std::io::Result<()> {
        let mut state = self.lock();
        state.queue.push_back(job);
        if state.queue.len() > state.idle && state.threads < self.max_threads {
            state.threads += 1;
            let started = std::thread::Builder::new()
                .name(self.name.to_string())
                .stack_size(self.stack_size)
                .spawn(move || self.work());
            if let Err(e) = started {
                state.threads -= 1;
                if state.threads == 0 {
                    // Nobody would ever run it.
                    state.queue.pop_back();
                    return Err(e);
                }
            }
        }
        self.work.notify_one();
        Ok(())
    }

    /// A pool thread: runs queued jobs, exits after [`IDLE_EXIT`] without any.
    fn work(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                job();
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let (next, waited) = self
                .work
                .wait_timeout(state, IDLE_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            state.idle -= 1;
            if waited.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }

    #[cfg(test)]
    fn threads(&self) -> usize {
        self.lock().threads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static POOL: EnginePool = EnginePool::new("test-engine", 256 * 1024, 4);

    async fn until_every_thread_waits(pool: &EnginePool) {
        for _ in 0..2_500 {
            {
                let state = pool.lock();
                if state.idle == state.threads {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("the pool's threads did not go back to waiting within 5 s");
    }

    #[tokio::test]
    async fn jobs_reuse_threads_and_report_panics_and_overruns() {
        let mut ran_on = std::collections::HashSet::new();
        for i in 0..50u32 {
            until_every_thread_waits(&POOL).await;
            let (sum, thread) = POOL
                .run("adding", Duration::from_secs(5), move || {
                    (i + 1, std::thread::current().id())
                })
                .await
                .expect("an answer");
            assert_eq!(sum, i + 1);
            ran_on.insert(thread);
        }
        // One after the other, each given once the thread is back to waiting: the
        // one thread runs them all. (Without that wait a job can come while the
        // thread, its answer sent, is not yet waiting, and a new thread starts.)
        assert_eq!(ran_on.len(), 1, "50 jobs ran on {} threads", ran_on.len());
        let e = POOL
            .run("panicking", Duration::from_secs(5), || -> u32 {
                panic!("boom")
            })
            .await;
        assert_eq!(e, Err("panicking failed unexpectedly".to_string()));
        let e = POOL
            .run("sleeping", Duration::from_millis(50), || {
                std::thread::sleep(Duration::from_millis(300))
            })
            .await;
        assert_eq!(
            e,
            Err("sleeping exceeded its deadline of 50 ms".to_string())
        );
        // While that one still sleeps, another job does not wait behind it.
        assert_eq!(
            POOL.run("adding", Duration::from_millis(200), || 2 + 2)
                .await,
            Ok(4)
        );
    }

    #[tokio::test]
    async fn concurrent_jobs_are_capped_at_the_limit_and_all_run() {
        static CAPPED: EnginePool = EnginePool::new("test-capped", 256 * 1024, 2);
        let jobs = (0..8u64).map(|i| {
            CAPPED.run("waiting", Duration::from_secs(10), move || {
                std::thread::sleep(Duration::from_millis(20));
                i
            })
        });
        let results = futures::future::join_all(jobs).await;
        assert_eq!(results, (0..8).map(Ok).collect::<Vec<_>>());
        assert!(CAPPED.threads() <= 2, "{} threads", CAPPED.threads());
    }

    /// A job whose caller gave up while it waited in the queue is not run.
    #[tokio::test]
    async fn a_job_given_up_on_while_queued_is_skipped() {
        static SINGLE: EnginePool = EnginePool::new("test-single", 256 * 1024, 1);
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = SINGLE.run("busy", Duration::from_secs(5), || {
            std::thread::sleep(Duration::from_millis(300));
        });
        let given_up = {
            let ran = ran.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                SINGLE
                    .run("queued", Duration::from_millis(50), move || {
                        ran.store(true, std::sync::atomic::Ordering::SeqCst)
                    })
                    .await
            }
        };
        let (busy, given_up) = futures::future::join(busy, given_up).await;
        assert_eq!(busy, Ok(()));
        assert!(given_up.is_err(), "the queued job's wait ran out");
        // The thread is free again: a later job runs, and the skipped one never did.
        assert_eq!(
            SINGLE.run("after", Duration::from_secs(5), || 7).await,
            Ok(7)
        );
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "the given-up job ran"
        );
    }
}
