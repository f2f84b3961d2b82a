//! [`ProbeRunner`]: runs probes for many Connectors at once without letting one tool
//! hurt the others. Three rules:
//! - at most `max_concurrent` requests in flight, and at most `max_per_host` of them to
//!   one scheme://host:port, taken in that order, so a slow or hanging tool holds at
//!   most `max_per_host` of the global permits;
//! - identical liveness requests (same [`ProbeRequest::dedup_key`] and trust bundle)
//!   share one request: callers that arrive while it is in flight wait for it, and its
//!   response is reused for `share_for` after a healthy answer (2xx/3xx that no
//!   caller's check has failed) or `share_failure_for` after anything else, so
//!   recovery is seen promptly (a tool answering 200 `{"status":"STARTING"}` is asked
//!   again after the short window, not after the probe interval); with
//!   `defer_shared_after`, callers arriving once the request has been out that long
//!   get [`Deferred`] at once and are called back when the answer is in;
//! - each Connector's class judges the shared response; a pass is remembered per
//!   class check for the life of the answer (the other Connectors of that class take
//!   it without evaluating again), a failure is judged by each caller.
//!
//! Auth probes are never shared: they carry each Connector's own credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

use super::request::ProbeCheck;
use super::{
    CompiledClass, HttpProber, HttpResponse, ProbeKind, ProbeOutcome, ProbeRequest, ProbeTarget,
    TrustBundle,
};

/// Limits and sharing windows of a [`ProbeRunner`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerSettings {
    pub max_concurrent: usize,
    pub max_per_host: usize,
    /// How long a healthy liveness response is reused (the probe interval).
    pub share_for: Duration,
    /// How long any other liveness result is reused (the first retry delay).
    pub share_failure_for: Duration,
    /// How long after a shared liveness request was sent its other callers still wait
    /// for it; later they give up at once with [`Deferred`] (their workers are better
    /// spent elsewhere than on a tool that does not answer). `None`: wait for it.
    pub defer_shared_after: Option<Duration>,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            max_concurrent: 128,
            max_per_host: 16,
            share_for: Duration::from_secs(300),
            share_failure_for: Duration::from_secs(10),
            defer_shared_after: None,
        }
    }
}

/// What a probe did, for metrics: which probe, its outcome, how long it took (waiting
/// for a permit included) and whether it reused another Connector's request.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    pub kind: ProbeKind,
    pub outcome: ProbeOutcome,
    pub elapsed: Duration,
    pub shared: bool,
    /// This caller's check judged the response (false: nothing to judge, or a pass of
    /// the same check on the same shared answer was taken).
    pub judged: bool,
}

type Sent = Result<HttpResponse, ProbeOutcome>;

/// Not judged: the liveness request this probe shares was still in flight
/// [`RunnerSettings::defer_shared_after`] after it was sent; ask again once it is
/// answered ([`Deferred::when_answered`]).
#[derive(Clone)]
pub struct Deferred {
    slot: Arc<SharedSlot>,
}

impl Deferred {
    /// Calls `wake` once the shared request has its answer or was abandoned (its
    /// sender cancelled; the next caller sends again), at once if either happened
    /// already.
    pub fn when_answered(&self, wake: impl FnOnce() + Send + 'static) {
        let mut wakers = self.slot.wakers.lock().unwrap_or_else(|e| e.into_inner());
        match wakers.as_mut() {
            Some(waiting) => waiting.push(Box::new(wake)),
            None => {
                drop(wakers);
                wake();
            }
        }
    }
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}

type Waker = Box<dyn FnOnce() + Send>;

struct SharedSlot {
    cell: OnceCell<(Instant, Sent)>,
    /// When the slot was opened, i.e. about when its request was sent.
    opened: Instant,
    /// Deferred callers to wake when the answer is in; `None` once it is.
    wakers: Mutex<Option<Vec<Waker>>>,
    /// Its sender was cancelled before the answer: the slot is stale at once.
    abandoned: std::sync::atomic::AtomicBool,
    /// The checks (one per class and probe) that passed this answer. A pass depends
    /// only on the check and the response, so the other Connectors of a class take it
    /// without evaluating again; failures are judged by each caller, whose message is
    /// scrubbed with its own secrets. Holding the checks keeps their addresses unique.
    passed: Mutex<Vec<Arc<ProbeCheck>>>,
    /// Set by the caller that sends the request; the others only wait for it.
    claimed: std::sync::atomic::AtomicBool,
    /// Set when any caller's class judged the answer a failure: the answer is then
    /// reused only for the failure window, whatever its status code.
    judged_failing: std::sync::atomic::AtomicBool,
}

impl SharedSlot {
    /// `judging`'s outcome (judged: true), or `Passed` at once (judged: false) when
    /// the request's check already passed this answer.
    async fn judge_once(
        &self,
        request: &ProbeRequest,
        judging: impl std::future::Future<Output = ProbeOutcome>,
    ) -> (ProbeOutcome, bool) {
        let check = &request.check;
        let passed = |list: &Vec<Arc<ProbeCheck>>| list.iter().any(|c| Arc::ptr_eq(c, check));
        if passed(&self.passed.lock().unwrap_or_else(|e| e.into_inner())) {
            return (ProbeOutcome::Passed, false);
        }
        let outcome = judging.await;
        if outcome.is_passed() {
            let mut list = self.passed.lock().unwrap_or_else(|e| e.into_inner());
            if !passed(&list) {
                list.push(check.clone());
            }
        }
        (outcome, true)
    }

    /// Wakes the callers deferred so far; later ones are woken as they register.
    fn wake_deferred(&self) {
        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner()).take();
        for wake in wakers.into_iter().flatten() {
            wake();
        }
    }
}

/// Marks its slot abandoned, and wakes the callers deferred on it, when the sending
/// future is dropped before the answer (so they do not wait for one that never comes).
struct AbandonedUnlessAnswered<'a>(Option<&'a SharedSlot>);

impl AbandonedUnlessAnswered<'_> {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for AbandonedUnlessAnswered<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            slot.abandoned
                .store(true, std::sync::atomic::Ordering::Release);
            slot.wake_deferred();
        }
    }
}

/// A liveness answer as one caller got it: the slot it is shared through and
/// whether another caller's request produced it.
struct SlotUse {
    slot: Arc<SharedSlot>,
    ran_elsewhere: bool,
}

/// Entries kept before expired ones are dropped.
const PRUNE_ABOVE: usize = 512;

pub struct ProbeRunner {
    prober: HttpProber,
    settings: RunnerSettings,
    global: Arc<Semaphore>,
    per_host: Mutex<HashMap<String, Arc<Semaphore>>>,
    shared: Mutex<HashMap<(String, u64), Arc<SharedSlot>>>,
    waiting: std::sync::atomic::AtomicI64,
}

impl ProbeRunner {
    pub fn new(prober: HttpProber, settings: RunnerSettings) -> Self {
        ProbeRunner {
            prober,
            global: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            settings,
            per_host: Mutex::default(),
            shared: Mutex::default(),
            waiting: Default::default(),
        }
    }

    pub fn prober(&self) -> &HttpProber {
        &self.prober
    }

    /// Probes waiting for a concurrency permit right now (a queue-depth figure).
    pub fn waiting(&self) -> i64 {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Builds, sends (shared and gated as above) and judges one probe. `None` when the
    /// class has no probe of that kind for the Connector.
    pub async fn run(
        &self,
        class: &CompiledClass,
        kind: ProbeKind,
        target: &ProbeTarget<'_>,
        trust: &TrustBundle,
    ) -> Result<Option<ProbeReport>, Deferred> {
        let started = Instant::now();
        let request = match class.request(kind, target) {
            None => return Ok(None),
            Some(Ok(r)) => r,
            Some(Err(outcome)) => {
                return Ok(Some(ProbeReport {
                    kind,
                    outcome,
                    elapsed: started.elapsed(),
                    shared: false,
                    judged: false,
                }));
            }
        };
        let (sent, slot) = match kind {
            ProbeKind::Liveness => {
                let (sent, slot) = self.shared_send(&request, trust).await?;
                (sent, Some(slot))
            }
            ProbeKind::Auth => (self.gated_send(&request, trust).await, None),
        };
        let (outcome, judged) = match (sent, &slot) {
            (Ok(response), Some(SlotUse { slot, .. })) => {
                slot.judge_once(&request, class.judge(kind, &request, &response))
                    .await
            }
            (Ok(response), None) => (class.judge(kind, &request, &response).await, true),
            (Err(outcome), _) => (outcome, false),
        };
        let shared = slot.as_ref().is_some_and(|s| s.ran_elsewhere);
        if let Some(SlotUse { slot, .. }) = slot.filter(|_| !outcome.is_passed()) {
            slot.judged_failing
                .store(true, std::sync::atomic::Ordering::Release);
        }
        // Building, sending and judging each scrub and bound their own messages.
        Ok(Some(ProbeReport {
            kind,
            outcome,
            elapsed: started.elapsed(),
            shared,
            judged,
        }))
    }

    /// One request per identical liveness request and sharing window, with the slot
    /// it was shared through. The caller that sends waits for its answer; the others
    /// wait until `defer_shared_after` from the send.
    async fn shared_send(
        &self,
        request: &ProbeRequest,
        trust: &TrustBundle,
    ) -> Result<(Sent, SlotUse), Deferred> {
        let key = (request.dedup_key(), trust.id());
        let slot = {
            let mut map = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            match map.get(&key) {
                Some(slot) if self.is_fresh(slot, now) => slot.clone(),
                _ => {
                    if map.len() >= PRUNE_ABOVE {
                        map.retain(|_, slot| self.is_fresh(slot, now));
                    }
                    let slot = Arc::new(SharedSlot {
                        cell: OnceCell::new(),
                        opened: now,
                        wakers: Mutex::new(Some(Vec::new())),
                        abandoned: Default::default(),
                        passed: Mutex::default(),
                        claimed: Default::default(),
                        judged_failing: Default::default(),
                    });
                    map.insert(key, slot.clone());
                    slot
                }
            }
        };
        let sender = !slot.claimed.swap(true, std::sync::atomic::Ordering::AcqRel);
        let mut ran_here = false;
        let answer = slot.cell.get_or_init(|| async {
            ran_here = true;
            let abandoned = AbandonedUnlessAnswered(Some(&slot));
            let sent = self.gated_send(request, trust).await;
            abandoned.answered();
            (Instant::now(), sent)
        });
        let (_, sent) = match self.settings.defer_shared_after {
            Some(patience) if !sender => {
                // Measured from the send, so that once a tool has kept its answer past
                // the patience, later callers are deferred without waiting at all.
                let left = patience.saturating_sub(slot.opened.elapsed());
                match tokio::time::timeout(left, answer).await {
                    Ok(answered) => answered,
                    Err(_) => return Err(Deferred { slot }),
                }
            }
            _ => answer.await,
        };
        let sent = sent.clone();
        if ran_here {
            slot.wake_deferred();
        }
        Ok((
            sent,
            SlotUse {
                slot,
                ran_elsewhere: !ran_here,
            },
        ))
    }

    /// In flight (not yet answered, not abandoned) or answered within its window.
    fn is_fresh(&self, slot: &SharedSlot, now: Instant) -> bool {
        match slot.cell.get() {
            None => !slot.abandoned.load(std::sync::atomic::Ordering::Acquire),
            Some((answered, sent)) => {
                let judged_failing = slot
                    .judged_failing
                    .load(std::sync::atomic::Ordering::Acquire);
                let window = match sent {
                    Ok(r) if r.status < 400 && !judged_failing => self.settings.share_for,
                    _ => self.settings.share_failure_for,
                };
                now.saturating_duration_since(*answered) < window
            }
        }
    }

    /// Sends within the per-host and then the global limit.
    async fn gated_send(&self, request: &ProbeRequest, trust: &TrustBundle) -> Sent {
        let host = self.host_gate(request);
        let waiting = WaitingGuard::new(&self.waiting);
        // The semaphores are never closed, so the permits are always granted.
        let _host_permit = host.acquire_owned().await;
        let _global_permit = self.global.clone().acquire_owned().await;
        drop(waiting);
        self.prober.send(request, trust).await
    }

    fn host_gate(&self, request: &ProbeRequest) -> Arc<Semaphore> {
        let origin = request.url().origin().ascii_serialization();
        let mut map = self.per_host.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PRUNE_ABOVE {
            // Idle gates (no permit taken) are dropped; busy ones are kept.
            let limit = self.settings.max_per_host.max(1);
            map.retain(|_, gate| gate.available_permits() < limit);
        }
        map.entry(origin)
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.max_per_host.max(1))))
            .clone()
    }
}

/// Counts a waiter until dropped (also when the waiting future is cancelled).
struct WaitingGuard<'a>(&'a std::sync::atomic::AtomicI64);

impl<'a> WaitingGuard<'a> {
    fn new(counter: &'a std::sync::atomic::AtomicI64) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        WaitingGuard(counter)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for ProbeRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeRunner")
            .field("settings", &self.settings)
            .finish()
    }
}
