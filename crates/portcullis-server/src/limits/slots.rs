//! Concurrency caps per key: how many of something (requests in flight, streams) one
//! principal holds at once. A slot is held by its [`Slot`] and given back when that is
//! dropped, so whatever carries the slot (a response body, a stream's task) bounds the
//! count for its whole lifetime.
//!
//! The table only has entries for keys holding a slot, so it is bounded by the slots in use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// At most `cap` slots per key.
#[derive(Debug)]
pub struct Slots {
    cap: usize,
    held: Mutex<HashMap<Arc<str>, usize>>,
}

/// One slot of a key, given back on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    key: Arc<str>,
}

impl Slots {
    /// A table allowing `cap` slots per key.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            held: Mutex::default(),
        })
    }

    /// The cap per key.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Takes a slot for `key`, or `None` when `key` already holds `cap` of them.
    pub fn try_acquire(self: &Arc<Self>, key: &str) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.get(key).copied().unwrap_or(0) >= self.cap {
            return None;
        }
        let key: Arc<str> = held
            .get_key_value(key)
            .map_or_else(|| Arc::from(key), |(key, _)| Arc::clone(key));
        *held.entry(Arc::clone(&key)).or_default() += 1;
        Some(Slot {
            slots: Arc::clone(self),
            key,
        })
    }

    /// Slots `key` holds now.
    pub fn held(&self, key: &str) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Keys holding at least one slot.
    pub fn keys(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&*self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&*self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_cap_slots_and_gets_them_back_on_drop() {
        let slots = Slots::new(2);
        let a1 = slots.try_acquire("a").expect("first");
        let a2 = slots.try_acquire("a").expect("second");
        assert!(slots.try_acquire("a").is_none(), "third over the cap");
        let b = slots
            .try_acquire("b")
            .expect("another key has its own slots");
        assert_eq!((slots.held("a"), slots.held("b")), (2, 1));
        drop(a1);
        let a3 = slots
            .try_acquire("a")
            .expect("a slot given back is free again");
        drop((a2, a3, b));
        assert_eq!(slots.keys(), 0, "no entry stays for a key holding nothing");
    }

    #[test]
    fn a_cap_of_zero_admits_nothing() {
        assert!(Slots::new(0).try_acquire("a").is_none());
    }
}
