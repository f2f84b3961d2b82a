//! What the Connector controller remembers between reconciles: recent probe results
//! (reused while their inputs are unchanged) and its own Service writes (whose watch
//! echo must not reconcile again).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::ObjectMeta;

use crate::api::{Connector, ConnectorClass, ConnectorStatus};
use crate::decide::proxy_service::ObservedService;
use crate::probe::{ProbeOutcome, TrustBundle};

/// Probe results of one Connector with a fingerprint of everything they depend on.
struct Memo {
    inputs: u64,
    at: Instant,
    liveness: Option<ProbeOutcome>,
    auth: Option<ProbeOutcome>,
}

/// Last probe results per Connector. A reconcile caused by something that does not
/// change the probes' inputs (its own proxy Service, an unrelated Secret edit, a
/// relist) reuses them instead of probing again; periodic re-probes come after the
/// reuse window and always probe.
#[derive(Default)]
pub struct ProbeMemo(Mutex<HashMap<String, Memo>>);

/// Liveness and auth outcomes; `None`: not run.
pub type Outcomes = (Option<ProbeOutcome>, Option<ProbeOutcome>);

impl ProbeMemo {
    pub fn get(
        &self,
        key: &str,
        inputs: u64,
        healthy_for: Duration,
        failed_for: Duration,
    ) -> Option<Outcomes> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let memo = map.get(key).filter(|m| m.inputs == inputs)?;
        let passed = |o: &Option<ProbeOutcome>| o.as_ref().is_none_or(ProbeOutcome::is_passed);
        let window = if passed(&memo.liveness) && passed(&memo.auth) {
            healthy_for
        } else {
            failed_for
        };
        (memo.at.elapsed() < window).then(|| (memo.liveness.clone(), memo.auth.clone()))
    }

    pub fn put(&self, key: String, inputs: u64, outcomes: Outcomes) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            key,
            Memo {
                inputs,
                at: Instant::now(),
                liveness: outcomes.0,
                auth: outcomes.1,
            },
        );
    }

    pub fn forget(&self, key: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

/// Status writes the Connector cache has not shown yet. A reconcile that runs right
/// after a status write (another trigger, such as the watch event of the proxy
/// Service, which can arrive before the Connector's own) still sees the old status in
/// the cache; without this it would write the same status again (about one Connector
/// in ten under a cold-start burst). Keyed by Connector: the resourceVersion the
/// cache showed when the status was written, and a hash of what was written.
#[derive(Default)]
pub struct PendingStatusWrites(Mutex<HashMap<String, (Option<String>, u64)>>);

impl PendingStatusWrites {
    /// Records a write made while the cache showed `version`.
    pub fn record(&self, key: &str, version: Option<&str>, status: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key.to_string(), (version.map(str::to_string), status));
    }

    /// Whether `status` was already written and the cache (still at `version`) only
    /// has not caught up. Once the cache shows another version, the entry is dropped
    /// and the cache is trusted again.
    pub fn already_written(&self, key: &str, version: Option<&str>, status: u64) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((at, written)) if at.as_deref() == version => *written == status,
            Some(_) => {
                map.remove(key);
                false
            }
            None => false,
        }
    }

    pub fn forget(&self, key: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// Hash of a status as it would be written, transition times aside: a reconcile on a
/// stale cache merges its conditions into the older stored ones and so stamps new
/// transition times on what is otherwise the status already written.
pub fn status_hash(status: &ConnectorStatus) -> u64 {
    let mut without_times = status.clone();
    for condition in &mut without_times.conditions {
        condition.last_transition_time = None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&without_times)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// The proxy Services this operator just wrote, by resource version, until the watch
/// shows them. Their watch event (the echo) does not reconcile the owner again: that
/// round would only find nothing to do (a second reconcile per new Connector, a third of
/// the API requests of a fresh start). And a reconcile of the owner that runs before the
/// echo sees the Service as written instead of missing from the cache, so it does not
/// create it again only to read it back after the conflict (docs/benchmarks.md, #19).
///
/// The echo may also arrive before the write's response (watches and writes travel on
/// different connections): the first event for a Service while a write of it is in
/// flight is taken for the echo. That is safe either way: a successful write supersedes
/// whatever state the event showed, later events trigger as usual, and a failed write
/// fails the reconcile, which runs again.
#[derive(Default)]
pub struct OwnServiceWrites(Mutex<HashMap<String, OwnWrite>>);

enum OwnWrite {
    /// Sent, no response yet; the resource version of the one event let through as
    /// its echo, if one came.
    InFlight { taken_as_echo: Option<String> },
    /// Written at this resource version, not shown by the watch yet.
    Written(String, ObservedService),
}

fn service_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn meta_key(meta: &ObjectMeta) -> String {
    service_key(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// A write of one Service in flight: [`ServiceWriteInFlight::written`] with the
/// response, or dropped when it failed (or its reconcile was cancelled).
pub struct ServiceWriteInFlight<'a> {
    writes: &'a OwnServiceWrites,
    key: String,
}

impl ServiceWriteInFlight<'_> {
    /// Remembers the state the write produced, as its owner sees it, unless the watch
    /// has already shown it.
    pub fn written(self, written: &Service, owner_uid: &str) {
        let Some(version) = written.metadata.resource_version.clone() else {
            return;
        };
        let mut map = self.writes.lock();
        let echo_seen = matches!(
            map.get(&self.key),
            Some(OwnWrite::InFlight { taken_as_echo: Some(seen) }) if *seen == version
        );
        if echo_seen {
            map.remove(&self.key);
        } else {
            let observed = ObservedService::of(Some(written), owner_uid);
            map.insert(self.key.clone(), OwnWrite::Written(version, observed));
        }
    }
}

impl Drop for ServiceWriteInFlight<'_> {
    fn drop(&mut self) {
        let mut map = self.writes.lock();
        if matches!(map.get(&self.key), Some(OwnWrite::InFlight { .. })) {
            map.remove(&self.key);
        }
    }
}

impl OwnServiceWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OwnWrite>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a write of `namespace/name` as sent; call before sending it.
    pub fn begin(&self, namespace: &str, name: &str) -> ServiceWriteInFlight<'_> {
        let key = service_key(namespace, name);
        self.lock().insert(
            key.clone(),
            OwnWrite::InFlight {
                taken_as_echo: None,
            },
        );
        ServiceWriteInFlight { writes: self, key }
    }

    /// The Service as this operator wrote it, while the watch has not shown it yet.
    pub fn unseen(&self, namespace: &str, name: &str) -> Option<ObservedService> {
        match self.lock().get(&service_key(namespace, name)) {
            Some(OwnWrite::Written(_, observed)) => Some(observed.clone()),
            _ => None,
        }
    }

    /// Whether a watched Service is exactly the state this operator wrote (or the first
    /// event while a write is in flight). Every other event triggers; one for a written
    /// Service also clears its record, so every later change, by anyone, triggers.
    pub fn is_echo(&self, seen: &ObjectMeta) -> bool {
        let key = meta_key(seen);
        let mut map = self.lock();
        match map.get_mut(&key) {
            Some(OwnWrite::InFlight { taken_as_echo }) => {
                if taken_as_echo.is_some() {
                    return false;
                }
                *taken_as_echo = Some(seen.resource_version.clone().unwrap_or_default());
                true
            }
            Some(OwnWrite::Written(..)) => {
                let Some(OwnWrite::Written(version, _)) = map.remove(&key) else {
                    return false;
                };
                Some(version.as_str()) == seen.resource_version.as_deref()
            }
            None => false,
        }
    }
}

/// Fingerprint of a probe's inputs: the Connector's spec, the class's spec and
/// resolved API URL, the Secret's version and the trust bundle.
pub fn probe_inputs(
    connector: &Connector,
    class: &ConnectorClass,
    class_api_url: Option<&str>,
    secret_version: Option<&str>,
    trust: &TrustBundle,
) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    connector.metadata.uid.hash(&mut h);
    connector.metadata.generation.hash(&mut h);
    class.metadata.uid.hash(&mut h);
    class.metadata.generation.hash(&mut h);
    class_api_url.hash(&mut h);
    secret_version.hash(&mut h);
    trust.id().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::FailureReason;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_status_write_the_cache_has_not_shown_is_not_repeated() {
        let pending = PendingStatusWrites::default();
        assert!(!pending.already_written("c", Some("1"), 7));
        pending.record("c", Some("1"), 7);
        assert!(
            pending.already_written("c", Some("1"), 7),
            "cache still at 1"
        );
        assert!(
            !pending.already_written("c", Some("1"), 8),
            "another status is written"
        );
        // The cache caught up (or someone else wrote): trust it from now on.
        assert!(!pending.already_written("c", Some("2"), 7));
        assert!(!pending.already_written("c", Some("1"), 7), "entry dropped");
        pending.record("c", Some("2"), 7);
        pending.forget("c");
        assert!(!pending.already_written("c", Some("2"), 7));
    }

    #[test]
    fn the_status_hash_ignores_transition_times_only() {
        use crate::decide::conditions::{Desired, merge};
        let at = |secs| {
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
            )
        };
        let status = |secs, reason: &str| ConnectorStatus {
            conditions: merge(&[], &[Desired::ok("Ready", reason, "")], &at(secs)),
            ..ConnectorStatus::default()
        };
        assert_eq!(status_hash(&status(1, "A")), status_hash(&status(2, "A")));
        assert_ne!(status_hash(&status(1, "A")), status_hash(&status(1, "B")));
    }

    #[test]
    fn a_pending_write_is_forgotten_once_the_cache_shows_it() {
        let pending = PendingStatusWrites::default();
        pending.record("c", Some("1"), 7);
        assert!(pending.already_written("c", Some("1"), 7));
        pending.forget("c");
        assert!(pending.is_empty());
    }

    /// The Service dev/c-git at `version`.
    fn service(version: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some("dev".into()),
                name: Some("c-git".into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_the_exact_state_written_is_an_echo_and_only_once() {
        let writes = OwnServiceWrites::default();
        assert!(
            !writes.is_echo(&service("1").metadata),
            "nothing written yet"
        );
        writes.begin("dev", "c-git").written(&service("5"), "uid");
        assert!(writes.is_echo(&service("5").metadata));
        assert!(
            !writes.is_echo(&service("5").metadata),
            "a second event is not the echo"
        );
        writes.begin("dev", "c-git").written(&service("7"), "uid");
        assert!(
            !writes.is_echo(&service("8").metadata),
            "someone else changed it since"
        );
        assert!(
            !writes.is_echo(&service("7").metadata),
            "the record is gone after any event"
        );
    }

    #[test]
    fn an_echo_before_the_response_is_taken_once_and_a_failed_write_forgets() {
        let writes = OwnServiceWrites::default();
        let in_flight = writes.begin("dev", "c-git");
        assert!(
            writes.is_echo(&service("5").metadata),
            "echo before response"
        );
        assert!(
            !writes.is_echo(&service("6").metadata),
            "a second event is a change"
        );
        assert_eq!(writes.unseen("dev", "c-git"), None, "nothing written yet");
        in_flight.written(&service("5"), "uid");
        assert_eq!(writes.unseen("dev", "c-git"), None, "the watch showed it");
        assert!(!writes.is_echo(&service("7").metadata), "record gone");

        // The echo of another version came first: the write's own echo is still taken.
        let in_flight = writes.begin("dev", "c-git");
        assert!(writes.is_echo(&service("8").metadata));
        in_flight.written(&service("9"), "uid");
        assert!(writes.unseen("dev", "c-git").is_some());
        assert!(writes.is_echo(&service("9").metadata));

        // A failed write (dropped) leaves nothing behind.
        drop(writes.begin("dev", "c-git"));
        assert!(!writes.is_echo(&service("10").metadata));
    }

    #[test]
    fn a_written_service_is_seen_as_written_until_the_watch_shows_it() {
        use k8s_openapi::api::core::v1::ServiceSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let written = Service {
            metadata: ObjectMeta {
                namespace: Some("dev".into()),
                name: Some("c-git".into()),
                resource_version: Some("5".into()),
                owner_references: Some(vec![OwnerReference {
                    uid: "uid-1".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some("proxy.example".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let writes = OwnServiceWrites::default();
        assert_eq!(writes.unseen("dev", "c-git"), None);
        writes.begin("dev", "c-git").written(&written, "uid-1");
        let expected = ObservedService::Present {
            owned: true,
            type_: Some("ExternalName".into()),
            external_name: Some("proxy.example".into()),
        };
        assert_eq!(writes.unseen("dev", "c-git"), Some(expected));
        assert_eq!(writes.unseen("other", "c-git"), None);
        assert!(writes.is_echo(&written.metadata));
        assert_eq!(writes.unseen("dev", "c-git"), None, "the cache has it now");
    }

    #[test]
    fn memo_reuses_results_only_for_the_same_inputs_and_within_the_window() {
        let memo = ProbeMemo::default();
        let passed = (Some(ProbeOutcome::Passed), Some(ProbeOutcome::Passed));
        memo.put("c".into(), 1, passed.clone());
        assert_eq!(memo.get("c", 1, HOUR, Duration::ZERO), Some(passed));
        assert_eq!(memo.get("c", 2, HOUR, HOUR), None, "inputs changed");
        assert_eq!(memo.get("other", 1, HOUR, HOUR), None);

        let failed = (
            Some(ProbeOutcome::Passed),
            Some(ProbeOutcome::failed(
                FailureReason::AuthenticationFailed,
                "401",
            )),
        );
        memo.put("c".into(), 1, failed.clone());
        assert_eq!(
            memo.get("c", 1, HOUR, Duration::ZERO),
            None,
            "failure window"
        );
        assert_eq!(memo.get("c", 1, Duration::ZERO, HOUR), Some(failed));
        memo.forget("c");
        assert_eq!(memo.get("c", 1, HOUR, HOUR), None);
    }
}
