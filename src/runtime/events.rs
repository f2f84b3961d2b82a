//! [`EventPublisher`]: Kubernetes Events (`events.k8s.io/v1`) with series, as
//! kube-runtime's `Recorder` and client-go publish them, remembering only what a
//! series needs.
//!
//! Why not kube-runtime's `Recorder`: it keeps every published Event whole for six
//! minutes and scans that cache on every publish. With a thousand failing Connectors
//! that is megabytes of peak memory and a quadratic scan (docs/benchmarks.md). Here a
//! series is a hash, the Event's name and namespace, a count and a time; a repeat is a
//! small merge patch of `series` only.
//!
//! Semantics kept from the `Recorder`: an Event repeating within six minutes (same
//! type, action, reason and regarding object; the note of the first one stays) bumps
//! the series of the first one; names are `<object>.<hex nanoseconds>`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

/// How long a series is continued (kube-runtime's and client-go's window).
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// Expired series are dropped at most this often (a scan of the book).
const PRUNE_EVERY: SignedDuration = SignedDuration::from_secs(30);

/// One occurrence to publish.
#[derive(Clone, Copy, Debug)]
pub struct EventNote<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: &'a str,
}

/// Publishes Events as one reporting controller (and instance, the Lease holder).
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    controller: Arc<str>,
    instance: Arc<str>,
    book: Arc<Mutex<SeriesBook>>,
}

impl EventPublisher {
    pub fn new(client: Client, controller: &str, instance: Option<&str>) -> Self {
        EventPublisher {
            client,
            controller: controller.into(),
            instance: instance.unwrap_or(controller).into(),
            book: Arc::default(),
        }
    }

    /// Creates the Event, or bumps the series of the same Event published within the
    /// last six minutes. Cluster-scoped objects get their Events in `default`.
    pub async fn publish(
        &self,
        event: &EventNote<'_>,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = series_key(event, regarding);
        let now = Timestamp::now();
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let planned = self.book().plan(key, now);
        if let Some(Bump { name, count }) = planned {
            let patch = serde_json::json!({
                "series": {"count": count, "lastObservedTime": MicroTime(now)}
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.book().bumped(key, count, now);
                    return Ok(());
                }
                // Deleted (an Event's own TTL, or by hand): a new series starts.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let created = self.new_event(event, regarding, now);
        let name = created.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &created).await?;
        self.book().created(key, name, now);
        Ok(())
    }

    fn book(&self) -> std::sync::MutexGuard<'_, SeriesBook> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_event(
        &self,
        event: &EventNote<'_>,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Event {
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            action: Some(event.action.to_string()),
            reason: Some(event.reason.to_string()),
            note: Some(event.note.to_string()),
            type_: Some(if event.warning { "Warning" } else { "Normal" }.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.to_string()),
            reporting_instance: Some(self.instance.to_string()),
            ..Event::default()
        }
    }
}

/// What makes two occurrences one series (the note is not part of it, as in
/// client-go); hashed, so the book keeps 8 bytes per series instead of the fields.
fn series_key(event: &EventNote<'_>, regarding: &ObjectReference) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (event.warning, event.action, event.reason).hash(&mut hasher);
    (
        &regarding.api_version,
        &regarding.kind,
        &regarding.namespace,
        &regarding.name,
        &regarding.uid,
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// A series to continue: the Event's name and its next count.
#[derive(Debug, PartialEq, Eq)]
struct Bump {
    name: String,
    count: i32,
}

#[derive(Debug)]
struct Series {
    name: Box<str>,
    count: i32,
    last: Timestamp,
}

/// The series published within [`SERIES_TTL`] (pure: the caller passes the time).
#[derive(Default, Debug)]
struct SeriesBook {
    series: HashMap<u64, Series>,
    pruned_at: Option<Timestamp>,
}

impl SeriesBook {
    /// The series to bump, or `None` for a new Event.
    fn plan(&mut self, key: u64, now: Timestamp) -> Option<Bump> {
        self.prune(now);
        self.series
            .get(&key)
            .filter(|s| s.last + SERIES_TTL > now)
            .map(|s| Bump {
                name: s.name.to_string(),
                count: s.count.saturating_add(1),
            })
    }

    fn created(&mut self, key: u64, name: String, now: Timestamp) {
        let series = Series {
            name: name.into_boxed_str(),
            count: 1,
            last: now,
        };
        self.series.insert(key, series);
    }

    fn bumped(&mut self, key: u64, count: i32, now: Timestamp) {
        if let Some(series) = self.series.get_mut(&key) {
            series.count = series.count.max(count);
            series.last = now;
        }
    }

    fn prune(&mut self, now: Timestamp) {
        if self.pruned_at.is_some_and(|at| at + PRUNE_EVERY > now) {
            return;
        }
        self.pruned_at = Some(now);
        self.series.retain(|_, s| s.last + SERIES_TTL > now);
        self.series.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn reference(name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("connectors.alauda.io/v1alpha1".into()),
            kind: Some("Connector".into()),
            namespace: Some("team".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..ObjectReference::default()
        }
    }

    const FAILED: EventNote<'static> = EventNote {
        warning: true,
        reason: "ProbeFailed",
        action: "Reconcile",
        note: "status code 503",
    };

    #[test]
    fn a_repeat_within_six_minutes_bumps_the_first_event_and_a_late_one_starts_anew() {
        let mut book = SeriesBook::default();
        let key = series_key(&FAILED, &reference("git", "u1"));
        assert_eq!(book.plan(key, at(0)), None);
        book.created(key, "git.1".into(), at(0));
        let bump = book.plan(key, at(10)).expect("a repeat");
        assert_eq!(
            bump,
            Bump {
                name: "git.1".into(),
                count: 2
            }
        );
        book.bumped(key, bump.count, at(10));
        assert_eq!(book.plan(key, at(20)).map(|b| b.count), Some(3));
        // Six minutes after the last occurrence: a new Event, and the old series is
        // dropped from the book.
        assert_eq!(book.plan(key, at(10 + 360)), None);
        assert!(book.series.is_empty());
    }

    #[test]
    fn the_series_is_per_object_reason_and_type_not_per_note() {
        let git = reference("git", "u1");
        let key = series_key(&FAILED, &git);
        let other_note = EventNote {
            note: "status code 500",
            ..FAILED
        };
        assert_eq!(series_key(&other_note, &git), key);
        let other_reason = EventNote {
            reason: "ConnectionFailed",
            ..FAILED
        };
        assert_ne!(series_key(&other_reason, &git), key);
        let normal = EventNote {
            warning: false,
            ..FAILED
        };
        assert_ne!(series_key(&normal, &git), key);
        assert_ne!(series_key(&FAILED, &reference("git", "u2")), key);
        assert_ne!(series_key(&FAILED, &reference("svn", "u1")), key);
    }

    #[test]
    fn expired_series_are_pruned_at_most_every_thirty_seconds() {
        let mut book = SeriesBook::default();
        for i in 0..100u64 {
            book.created(i, format!("c{i}.1"), at(0));
        }
        book.plan(1000, at(1));
        assert_eq!(book.series.len(), 100, "none expired yet");
        book.plan(1000, at(361));
        assert!(book.series.is_empty(), "all expired at 360 s");
        // An expired series is not continued even before the next scan drops it.
        book.created(7, "c7.1".into(), at(0));
        assert_eq!(book.plan(7, at(361 + 29)), None);
        assert_eq!(book.series.len(), 1, "no scan within 30 s of the last");
        book.plan(1000, at(361 + 30));
        assert!(book.series.is_empty());
    }
}
