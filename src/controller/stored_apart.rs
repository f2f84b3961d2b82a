//! What the watch keeps apart from kube's reflector store of Connectors: each
//! Connector's status conditions, labels and annotations. The watch moves them here
//! before the store sees the object, and a reconcile puts them back into its own copy
//! ([`StoredApart::restore`]).
//!
//! Why: conditions were the largest part of the Connector cache (eight per Connector,
//! ~1.6 KiB with their strings: 13 MiB at 10,000; docs/benchmarks.md, issue #19), and
//! labels and annotations the next (a map node of ~540 bytes plus its strings, per
//! Connector). Here a Connector keeps only its transition times; everything else (the
//! condition types, statuses, reasons, messages; the two maps) is one shared copy per
//! distinct value, and thousands of Connectors have the same ones. Nothing that reads
//! the store outside a reconcile looks at labels, annotations or conditions (the class
//! and Secret mappers read the spec).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher;

use crate::api::{Condition, Connector};

use super::connector::key_of;

/// A condition without its transition time.
#[derive(Debug, Hash, PartialEq, Eq)]
struct Shape {
    type_: String,
    status: String,
    severity: Option<String>,
    reason: Option<String>,
    message: Option<String>,
}

/// A Connector's labels and annotations.
#[derive(Debug, Hash, PartialEq, Eq)]
struct MetadataMaps {
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

struct Stored {
    /// `None`: the Connector has no status yet.
    shapes: Option<Arc<[Shape]>>,
    times: Box<[Option<Time>]>,
    maps: Arc<MetadataMaps>,
}

/// One copy of each distinct value, dropped once nobody else holds it.
struct Shared<T: ?Sized>(HashSet<Arc<T>>);

impl<T: ?Sized> Default for Shared<T> {
    fn default() -> Self {
        Shared(HashSet::new())
    }
}

impl<T: ?Sized + Hash + Eq> Shared<T> {
    fn share(&mut self, value: Box<T>) -> Arc<T> {
        if let Some(known) = self.0.get(&*value) {
            return known.clone();
        }
        let new: Arc<T> = value.into();
        self.0.insert(new.clone());
        new
    }

    /// Called with a value a Connector no longer holds: drops it if only the set has it.
    fn release(&mut self, old: Arc<T>) {
        if Arc::strong_count(&old) == 2 {
            self.0.remove(&*old);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[derive(Default)]
struct State {
    by_connector: HashMap<String, Stored>,
    shapes: Shared<[Shape]>,
    maps: Shared<MetadataMaps>,
    /// The Connectors listed so far in a relist in progress.
    relisted: Option<HashSet<String>>,
}

/// Conditions, labels and annotations by Connector key; feed it every watch event with
/// [`StoredApart::take`].
#[derive(Default)]
pub struct StoredApart(Mutex<State>);

impl State {
    fn insert(&mut self, key: String, connector: &mut Connector) {
        let maps = MetadataMaps {
            labels: connector.metadata.labels.take(),
            annotations: connector.metadata.annotations.take(),
        };
        let (shapes, times) = match connector.status.as_mut() {
            Some(status) => {
                let (shapes, times) = split(std::mem::take(&mut status.conditions));
                (Some(self.shapes.share(shapes.into())), times)
            }
            None => (None, Box::default()),
        };
        let stored = Stored {
            shapes,
            times,
            maps: self.maps.share(Box::new(maps)),
        };
        if let Some(old) = self.by_connector.insert(key, stored) {
            self.release(old);
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.by_connector.remove(key) {
            self.release(old);
        }
    }

    fn release(&mut self, old: Stored) {
        if let Some(shapes) = old.shapes {
            self.shapes.release(shapes);
        }
        self.maps.release(old.maps);
    }
}

/// Conditions into their shared part and their own transition times.
fn split(conditions: Vec<Condition>) -> (Vec<Shape>, Box<[Option<Time>]>) {
    let (shapes, times): (Vec<Shape>, Vec<Option<Time>>) = conditions
        .into_iter()
        .map(|c| {
            let shape = Shape {
                type_: c.type_,
                status: c.status,
                severity: c.severity,
                reason: c.reason,
                message: c.message,
            };
            (shape, c.last_transition_time)
        })
        .unzip();
    (shapes, times.into_boxed_slice())
}

impl StoredApart {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the conditions, labels and annotations of the event's Connector here,
    /// leaving it without them. A relist's end forgets the Connectors it did not list,
    /// as the store does.
    pub fn take(&self, event: &mut watcher::Event<Connector>) {
        let mut state = self.lock();
        match event {
            watcher::Event::Apply(connector) => state.insert(key_of(connector), connector),
            watcher::Event::InitApply(connector) => {
                let key = key_of(connector);
                state.insert(key.clone(), connector);
                if let Some(relisted) = state.relisted.as_mut() {
                    relisted.insert(key);
                }
            }
            watcher::Event::Delete(connector) => state.remove(&key_of(connector)),
            watcher::Event::Init => state.relisted = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let relisted = state.relisted.take().unwrap_or_default();
                let gone: Vec<String> = state
                    .by_connector
                    .keys()
                    .filter(|key| !relisted.contains(*key))
                    .cloned()
                    .collect();
                for key in gone {
                    state.remove(&key);
                }
            }
        }
    }

    /// The Connector as the apiserver last showed it: conditions, labels and
    /// annotations included.
    pub fn restore(&self, cached: &Connector) -> Connector {
        let mut connector = cached.clone();
        let state = self.lock();
        let Some(stored) = state.by_connector.get(&key_of(cached)) else {
            return connector;
        };
        connector.metadata.labels = stored.maps.labels.clone();
        connector.metadata.annotations = stored.maps.annotations.clone();
        if let (Some(status), Some(shapes)) = (connector.status.as_mut(), &stored.shapes) {
            status.conditions = shapes
                .iter()
                .zip(stored.times.iter())
                .map(|(shape, time)| Condition {
                    type_: shape.type_.clone(),
                    status: shape.status.clone(),
                    severity: shape.severity.clone(),
                    last_transition_time: time.clone(),
                    reason: shape.reason.clone(),
                    message: shape.message.clone(),
                })
                .collect();
        }
        connector
    }

    /// How many distinct condition lists and label/annotation pairs are held.
    #[cfg(test)]
    fn distinct(&self) -> (usize, usize) {
        let state = self.lock();
        (state.shapes.len(), state.maps.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ConnectorStatus;

    fn condition(type_: &str, status: &str, second: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            severity: None,
            last_transition_time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(second).expect("time"),
            )),
            reason: (status != "True").then(|| "Failed".into()),
            message: (status != "True").then(|| format!("failed at {second}")),
        }
    }

    /// Connector has no `PartialEq`: compare what the apiserver would see.
    fn json(connector: &Connector) -> serde_json::Value {
        serde_json::to_value(connector).expect("json")
    }

    fn connector(name: &str, conditions: Vec<Condition>) -> Connector {
        let mut c = Connector::new(
            name,
            serde_json::from_value(serde_json::json!({
                "connectorClassName": "git",
                "address": "https://github.com",
            }))
            .expect("spec"),
        );
        c.metadata.namespace = Some("dev".into());
        c.metadata.labels = Some(BTreeMap::from([("team".into(), "dev".into())]));
        c.metadata.annotations = Some(BTreeMap::from([("owner".into(), name.into())]));
        c.status = Some(ConnectorStatus {
            observed_generation: Some(3),
            conditions,
            ..ConnectorStatus::default()
        });
        c
    }

    #[test]
    fn a_restored_connector_equals_the_watched_one() {
        let stored = StoredApart::default();
        let watched = connector(
            "a",
            vec![
                condition("LivenessReady", "True", 10),
                condition("AuthReady", "False", 20),
            ],
        );
        let mut event = watcher::Event::Apply(watched.clone());
        stored.take(&mut event);
        let watcher::Event::Apply(cached) = event else {
            unreachable!("an Apply stays an Apply")
        };
        assert_eq!(
            cached.status.as_ref().map(|s| s.conditions.len()),
            Some(0),
            "the cached copy holds no conditions"
        );
        assert!(
            cached.metadata.labels.is_none() && cached.metadata.annotations.is_none(),
            "nor labels or annotations"
        );
        assert_eq!(json(&stored.restore(&cached)), json(&watched));
        let mut unknown = connector("b", vec![]);
        unknown.status = None;
        assert_eq!(
            json(&stored.restore(&unknown)),
            json(&unknown),
            "nothing stored, nothing added"
        );
    }

    #[test]
    fn connectors_with_the_same_conditions_share_one_list_but_keep_their_times() {
        let stored = StoredApart::default();
        let mut cached = Vec::new();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            let second = 100 + i64::try_from(i).expect("small");
            let c = connector(name, vec![condition("Ready", "True", second)]);
            let mut event = watcher::Event::InitApply(c.clone());
            stored.take(&mut event);
            if let watcher::Event::InitApply(left) = event {
                cached.push((left, c));
            }
        }
        assert_eq!(stored.distinct().0, 1);
        for (left, original) in &cached {
            assert_eq!(
                json(&stored.restore(left)),
                json(original),
                "own transition time"
            );
        }
        // One of them fails: a second list; it recovers: back to one.
        let failing = connector("a", vec![condition("Ready", "False", 200)]);
        stored.take(&mut watcher::Event::Apply(failing));
        assert_eq!(stored.distinct().0, 2);
        let recovered = connector("a", vec![condition("Ready", "True", 300)]);
        stored.take(&mut watcher::Event::Apply(recovered));
        assert_eq!(stored.distinct().0, 1, "the failed list is dropped");
    }

    #[test]
    fn connectors_with_the_same_labels_and_annotations_share_one_copy() {
        let stored = StoredApart::default();
        let with_owner = |name: &str, owner: &str| {
            let mut c = connector(name, vec![]);
            c.metadata.annotations = Some(BTreeMap::from([("owner".into(), owner.into())]));
            c
        };
        let (a, b) = (with_owner("a", "ops"), with_owner("b", "ops"));
        let mut event_a = watcher::Event::Apply(a.clone());
        let mut event_b = watcher::Event::Apply(b.clone());
        stored.take(&mut event_a);
        stored.take(&mut event_b);
        assert_eq!(
            stored.distinct().1,
            1,
            "same labels and annotations: one copy"
        );
        let (watcher::Event::Apply(cached_a), watcher::Event::Apply(cached_b)) = (event_a, event_b)
        else {
            unreachable!("an Apply stays an Apply")
        };
        assert_eq!(json(&stored.restore(&cached_a)), json(&a));
        assert_eq!(json(&stored.restore(&cached_b)), json(&b));
        // A label edit on one: two copies; deleting it drops its copy.
        let mut edited = with_owner("b", "ops");
        edited.metadata.labels = Some(BTreeMap::from([("team".into(), "qa".into())]));
        stored.take(&mut watcher::Event::Apply(edited.clone()));
        assert_eq!(stored.distinct().1, 2);
        let mut without = edited.clone();
        without.metadata.labels = None;
        without.metadata.annotations = None;
        assert_eq!(json(&stored.restore(&without)), json(&edited));
        stored.take(&mut watcher::Event::Delete(edited));
        assert_eq!(stored.distinct().1, 1, "the edited copy is dropped");
    }

    #[test]
    fn deletes_and_relists_forget_connectors_that_are_gone() {
        let stored = StoredApart::default();
        let a = connector("a", vec![condition("Ready", "False", 1)]);
        let b = connector("b", vec![condition("Ready", "True", 2)]);
        stored.take(&mut watcher::Event::Apply(a.clone()));
        stored.take(&mut watcher::Event::Apply(b.clone()));
        stored.take(&mut watcher::Event::Delete(a.clone()));
        let bare = |c: &Connector| {
            let mut c = c.clone();
            if let Some(s) = c.status.as_mut() {
                s.conditions.clear();
            }
            c
        };
        assert_eq!(
            json(&stored.restore(&bare(&a))),
            json(&bare(&a)),
            "deleted: forgotten"
        );
        assert_eq!(stored.distinct().0, 1);

        stored.take(&mut watcher::Event::Apply(a.clone()));
        stored.take(&mut watcher::Event::Init);
        stored.take(&mut watcher::Event::InitApply(b.clone()));
        stored.take(&mut watcher::Event::InitDone);
        assert_eq!(
            json(&stored.restore(&bare(&a))),
            json(&bare(&a)),
            "not relisted: gone"
        );
        assert_eq!(json(&stored.restore(&bare(&b))), json(&b));
        assert_eq!(stored.distinct().0, 1);
    }
}
