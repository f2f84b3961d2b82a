//! A fair share of the workers per key (a namespace): one key cannot hold every
//! worker while others wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// At most `limit` holders per key at once.
#[derive(Clone, Debug)]
pub struct FairShare {
    limit: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// One held slot; released when dropped.
#[derive(Debug)]
pub struct Slot {
    key: String,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl FairShare {
    pub fn new(limit: usize) -> Self {
        FairShare {
            limit: limit.max(1),
            held: Arc::default(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A slot for `key`, or `None` when the key holds its share already (the caller
    /// comes back later instead of occupying a worker while it waits).
    pub fn try_acquire(&self, key: &str) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(key.to_string()).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            key: key.to_string(),
            held: self.held.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_cannot_take_every_slot() {
        let share = FairShare::new(2);
        let a1 = share.try_acquire("hostile");
        let a2 = share.try_acquire("hostile");
        assert!(a1.is_some() && a2.is_some());
        assert!(share.try_acquire("hostile").is_none(), "over its share");
        assert!(
            share.try_acquire("other").is_some(),
            "another key still gets one"
        );
        drop(a1);
        assert!(share.try_acquire("hostile").is_some(), "released on drop");
        drop(a2);
        assert_eq!(
            share.held.lock().unwrap().get("other"),
            None,
            "idle keys are forgotten"
        );
    }
}
