//! The stored status conditions of every watched Connector, kept outside kube's
//! reflector store: the watch moves them here before the store sees the object, and
//! a reconcile puts them back into its own copy ([`StoredConditions::restore`]).
//!
//! Why: conditions were the largest part of the Connector cache (eight per Connector,
//! ~1.6 KiB with their strings: 13 MiB at 10,000; docs/benchmarks.md, issue #19). Here a
//! Connector keeps only its transition times; everything else of the list (types,
//! statuses, reasons, messages) is one shared copy per distinct list, and thousands of
//! Ready Connectors have the same one.

use std::collections::{HashMap, HashSet};
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

struct Stored {
    shapes: Arc<[Shape]>,
    times: Box<[Option<Time>]>,
}

#[derive(Default)]
struct State {
    by_connector: HashMap<String, Stored>,
    /// One copy of each distinct condition list.
    shapes: HashSet<Arc<[Shape]>>,
    /// The Connectors listed so far in a relist in progress.
    relisted: Option<HashSet<String>>,
}

/// Conditions by Connector key; feed it every watch event with [`StoredConditions::take`].
#[derive(Default)]
pub struct StoredConditions(Mutex<State>);

impl State {
    fn insert(&mut self, key: String, conditions: Vec<Condition>) {
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
        let shared = match self.shapes.get(shapes.as_slice()) {
            Some(known) => known.clone(),
            None => {
                let new: Arc<[Shape]> = shapes.into();
                self.shapes.insert(new.clone());
                new
            }
        };
        let stored = Stored {
            shapes: shared,
            times: times.into_boxed_slice(),
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

    /// Drops a shared list once no Connector holds it (the set's own copy aside).
    fn release(&mut self, old: Stored) {
        if Arc::strong_count(&old.shapes) == 2 {
            self.shapes.remove(&*old.shapes);
        }
    }
}

impl StoredConditions {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the conditions of the event's Connector here, leaving it without them.
    /// A relist's end forgets the Connectors it did not list, as the store does.
    pub fn take(&self, event: &mut watcher::Event<Connector>) {
        let mut state = self.lock();
        match event {
            watcher::Event::Apply(connector) => take_from(&mut state, connector),
            watcher::Event::InitApply(connector) => {
                take_from(&mut state, connector);
                if let Some(relisted) = state.relisted.as_mut() {
                    relisted.insert(key_of(connector));
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

    /// The Connector as the apiserver last showed it, conditions included.
    pub fn restore(&self, cached: &Connector) -> Connector {
        let mut connector = cached.clone();
        let state = self.lock();
        if let (Some(status), Some(stored)) = (
            connector.status.as_mut(),
            state.by_connector.get(&key_of(cached)),
        ) {
            status.conditions = stored
                .shapes
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

    /// How many distinct condition lists are held.
    #[cfg(test)]
    fn distinct_lists(&self) -> usize {
        self.lock().shapes.len()
    }
}

fn take_from(state: &mut State, connector: &mut Connector) {
    let key = key_of(connector);
    match connector.status.as_mut() {
        Some(status) => state.insert(key, std::mem::take(&mut status.conditions)),
        None => state.remove(&key),
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
        c.status = Some(ConnectorStatus {
            observed_generation: Some(3),
            conditions,
            ..ConnectorStatus::default()
        });
        c
    }

    #[test]
    fn a_restored_connector_equals_the_watched_one() {
        let stored = StoredConditions::default();
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
        let stored = StoredConditions::default();
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
        assert_eq!(stored.distinct_lists(), 1);
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
        assert_eq!(stored.distinct_lists(), 2);
        let recovered = connector("a", vec![condition("Ready", "True", 300)]);
        stored.take(&mut watcher::Event::Apply(recovered));
        assert_eq!(stored.distinct_lists(), 1, "the failed list is dropped");
    }

    #[test]
    fn deletes_and_relists_forget_connectors_that_are_gone() {
        let stored = StoredConditions::default();
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
        assert_eq!(stored.distinct_lists(), 1);

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
        assert_eq!(stored.distinct_lists(), 1);
    }
}
