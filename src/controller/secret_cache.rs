//! The Secrets Connectors reference, kept between reconciles so that a re-probe reads
//! none from the apiserver. An entry stays valid while the metadata watch of Secrets
//! shows no other resourceVersion for it; any change, deletion or relist drops it, and
//! the next reconcile reads the Secret again. Only referenced Secrets are kept: an
//! entry goes when the last Connector referencing it stops doing so.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

/// `(namespace, name)` of a Secret.
pub type SecretKey = (String, String);

/// What is known of one referenced Secret.
enum Entry {
    /// A read is under way; its result is kept only if nothing changed meanwhile.
    Reading(u64),
    /// The Secret as last read (`None`: it did not exist).
    Known(Option<Arc<Secret>>),
}

#[derive(Default)]
struct Inner {
    entries: HashMap<SecretKey, Entry>,
    /// The Secrets each Connector references (by Connector key), sharing the keys of
    /// `counts`: one copy of a Secret's name however many Connectors read it.
    references: HashMap<Box<str>, Box<[Arc<SecretKey>]>>,
    /// How many Connectors reference each Secret.
    counts: HashMap<Arc<SecretKey>, usize>,
    next_ticket: u64,
}

/// Secret data by key, valid while the watch shows it unchanged.
#[derive(Default)]
pub struct SecretCache(Mutex<Inner>);

impl fmt::Debug for SecretCache {
    /// Never the data: only how many Secrets are held.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCache")
            .field("entries", &self.lock().entries.len())
            .finish()
    }
}

/// A read to carry out: hand its result to [`SecretCache::finish`].
#[must_use]
pub struct Ticket(u64);

impl SecretCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the Secrets a Connector references now; Secrets nobody references any
    /// more are dropped.
    pub fn set_references(&self, connector: &str, keys: Vec<SecretKey>) {
        let mut inner = self.lock();
        let same = |held: &[Arc<SecretKey>]| {
            held.len() == keys.len() && held.iter().zip(&keys).all(|(a, b)| **a == *b)
        };
        if inner
            .references
            .get(connector)
            .is_some_and(|held| same(held))
        {
            return;
        }
        let shared: Box<[Arc<SecretKey>]> = keys
            .into_iter()
            .map(|key| inner.count_one_more(key))
            .collect();
        if let Some(old) = inner.references.insert(connector.into(), shared) {
            inner.release(&old);
        }
    }

    /// Forgets a deleted Connector's references.
    pub fn forget(&self, connector: &str) {
        let mut inner = self.lock();
        if let Some(old) = inner.references.remove(connector) {
            inner.release(&old);
        }
    }

    /// The Secret as last read, while the watch shows it unchanged.
    pub fn get(&self, key: &SecretKey) -> Option<Option<Arc<Secret>>> {
        match self.lock().entries.get(key) {
            Some(Entry::Known(secret)) => Some(secret.clone()),
            _ => None,
        }
    }

    /// Starts a read of `key`.
    pub fn begin(&self, key: &SecretKey) -> Ticket {
        let mut inner = self.lock();
        inner.next_ticket += 1;
        let ticket = inner.next_ticket;
        if inner.counts.contains_key(key) {
            inner.entries.insert(key.clone(), Entry::Reading(ticket));
        }
        Ticket(ticket)
    }

    /// Keeps what a read found, unless the Secret changed (or stopped being
    /// referenced) while it was read.
    pub fn finish(&self, key: &SecretKey, ticket: Ticket, found: Option<Arc<Secret>>) {
        let mut inner = self.lock();
        if let Some(entry) = inner.entries.get_mut(key)
            && matches!(entry, Entry::Reading(t) if *t == ticket.0)
        {
            *entry = Entry::Known(found);
        }
    }

    /// Applies one event of the Secrets' metadata watch.
    pub fn observe(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let mut inner = self.lock();
        match event {
            watcher::Event::Apply(meta) | watcher::Event::InitApply(meta) => {
                let key = key_of(meta);
                let unchanged = matches!(
                    inner.entries.get(&key),
                    Some(Entry::Known(Some(secret)))
                        if secret.metadata.resource_version == meta.metadata.resource_version
                );
                if !unchanged {
                    inner.entries.remove(&key);
                }
            }
            watcher::Event::Delete(meta) => {
                inner.entries.remove(&key_of(meta));
            }
            // A relist: deletions while the watch was down are not replayed.
            watcher::Event::Init => inner.entries.clear(),
            watcher::Event::InitDone => {}
        }
    }

    /// Secrets held (for tests and the debug view).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Counts one more reference to `key`; returns the shared copy of the key.
    fn count_one_more(&mut self, key: SecretKey) -> Arc<SecretKey> {
        match self.counts.get_key_value(&key) {
            Some((shared, _)) => {
                let shared = shared.clone();
                if let Some(count) = self.counts.get_mut(&key) {
                    *count += 1;
                }
                shared
            }
            None => {
                let shared = Arc::new(key);
                self.counts.insert(shared.clone(), 1);
                shared
            }
        }
    }

    fn release(&mut self, keys: &[Arc<SecretKey>]) {
        for key in keys.iter() {
            if let Some(count) = self.counts.get_mut(&**key) {
                *count -= 1;
                if *count == 0 {
                    self.counts.remove(&**key);
                    self.entries.remove(&**key);
                }
            }
        }
    }
}

fn key_of(meta: &PartialObjectMeta<Secret>) -> SecretKey {
    (
        meta.metadata.namespace.clone().unwrap_or_default(),
        meta.metadata.name.clone().unwrap_or_default(),
    )
}

/// Drops what no reconcile reads from a kept Secret.
pub fn trim(secret: &mut Secret) {
    secret.metadata.managed_fields = None;
    if let Some(annotations) = secret.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn key(name: &str) -> SecretKey {
        ("ns".into(), name.into())
    }

    fn secret(name: &str, version: &str) -> Arc<Secret> {
        Arc::new(Secret {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn meta(name: &str, version: &str) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            types: None,
            metadata: secret(name, version).metadata.clone(),
            _phantom: Default::default(),
        }
    }

    fn read(cache: &SecretCache, name: &str, found: Option<Arc<Secret>>) {
        let ticket = cache.begin(&key(name));
        cache.finish(&key(name), ticket, found);
    }

    #[test]
    fn kept_while_the_watch_shows_the_same_version() {
        let cache = SecretCache::default();
        cache.set_references("c1", vec![key("s")]);
        assert!(cache.get(&key("s")).is_none());
        read(&cache, "s", Some(secret("s", "1")));
        cache.observe(&watcher::Event::Apply(meta("s", "1")));
        let kept = cache.get(&key("s")).flatten().unwrap();
        assert_eq!(kept.metadata.resource_version.as_deref(), Some("1"));
        cache.observe(&watcher::Event::Apply(meta("s", "2")));
        assert!(cache.get(&key("s")).is_none(), "changed: read again");
        read(&cache, "s", Some(secret("s", "2")));
        cache.observe(&watcher::Event::Delete(meta("s", "2")));
        assert!(cache.get(&key("s")).is_none(), "deleted: read again");
        read(&cache, "s", None);
        assert_eq!(cache.get(&key("s")), Some(None), "absence is kept too");
        cache.observe(&watcher::Event::Apply(meta("s", "3")));
        assert!(cache.get(&key("s")).is_none(), "created: read again");
        read(&cache, "s", Some(secret("s", "3")));
        cache.observe(&watcher::Event::Init);
        assert!(cache.is_empty(), "a relist drops everything");
    }

    #[test]
    fn a_change_during_a_read_discards_its_result() {
        let cache = SecretCache::default();
        cache.set_references("c1", vec![key("s")]);
        let ticket = cache.begin(&key("s"));
        cache.observe(&watcher::Event::Apply(meta("s", "2")));
        cache.finish(&key("s"), ticket, Some(secret("s", "1")));
        assert!(cache.get(&key("s")).is_none());
    }

    #[test]
    fn only_referenced_secrets_are_kept() {
        let cache = SecretCache::default();
        read(&cache, "unreferenced", Some(secret("unreferenced", "1")));
        assert!(cache.is_empty());
        cache.set_references("c1", vec![key("s")]);
        cache.set_references("c2", vec![key("s"), key("ca")]);
        read(&cache, "s", Some(secret("s", "1")));
        read(&cache, "ca", Some(secret("ca", "1")));
        assert_eq!(cache.len(), 2);
        cache.set_references("c2", vec![key("s")]);
        assert!(cache.get(&key("ca")).is_none(), "no longer referenced");
        cache.forget("c1");
        assert!(cache.get(&key("s")).is_some(), "c2 still references it");
        cache.forget("c2");
        assert!(cache.is_empty());
    }

    #[test]
    fn connectors_reading_one_secret_share_one_copy_of_its_key() {
        let cache = SecretCache::default();
        cache.set_references("c1", vec![key("s")]);
        cache.set_references("c2", vec![key("s")]);
        cache.set_references("c2", vec![key("s")]);
        let inner = cache.lock();
        assert_eq!(inner.counts.len(), 1);
        let (shared, count) = inner.counts.iter().next().expect("one key");
        assert_eq!(*count, 2, "a repeated call is not counted twice");
        assert_eq!(
            Arc::strong_count(shared),
            3,
            "the count's copy and two references"
        );
    }

    #[test]
    fn debug_shows_no_data() {
        let cache = SecretCache::default();
        cache.set_references("c1", vec![key("s")]);
        let mut with_data = (*secret("s", "1")).clone();
        with_data.string_data = Some([("password".into(), "hunter2".into())].into());
        read(&cache, "s", Some(Arc::new(with_data)));
        assert_eq!(format!("{cache:?}"), "SecretCache { entries: 1 }");
    }
}
