//! A small bounded cache whose entries expire: review results and Secrets of the data
//! plane. Expired entries are dropped when the cache is full; past the bound the
//! oldest half goes (a burst of distinct keys cannot grow memory without limit).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The value, while it has not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let (expires, value) = entries.get(key)?;
        (Instant::now() < *expires).then(|| value.clone())
    }

    /// Keeps `value` for `ttl` (nothing is kept for a zero ttl).
    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        if entries.len() >= self.capacity {
            entries.retain(|_, (expires, _)| *expires > now);
        }
        if entries.len() >= self.capacity {
            let mut expiries: Vec<Instant> = entries.values().map(|(e, _)| *e).collect();
            expiries.sort_unstable();
            let cut = expiries[expiries.len() / 2];
            entries.retain(|_, (expires, _)| *expires > cut);
        }
        entries.insert(key, (now + ttl, value));
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_bound_holds() {
        let cache = TtlCache::new(4);
        cache.insert("a", 1, Duration::from_millis(30));
        assert_eq!(cache.get(&"a"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&"a"), None);
        for (i, k) in ["b", "c", "d", "e", "f", "g"].iter().enumerate() {
            cache.insert(*k, i, Duration::from_secs(60 + i as u64));
        }
        assert!(cache.len() <= 4, "{}", cache.len());
        assert_eq!(cache.get(&"g"), Some(5));
        cache.insert("z", 9, Duration::ZERO);
        assert_eq!(cache.get(&"z"), None);
    }
}
