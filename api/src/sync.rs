//! One policy for a poisoned mutex, shared by every crate: recover the data
//! with `into_inner` and carry on.
//!
//! A mutex is poisoned when a thread panicked while holding it. Flint's
//! mutexes guard maps and counters that every writer leaves whole between
//! statements (an insert, a remove, a counter bump), so the data is still
//! usable; skipping the work instead (the old `if let Ok(..)` pattern) would
//! silently stop routing, scaling or counting for the rest of the process's
//! life. The reconciler has always recovered this way.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering the guard if a panicking thread poisoned it.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_still_locks_with_its_data() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let held = std::sync::Arc::clone(&mutex);
        let _ = std::thread::spawn(move || {
            let mut guard = held.lock().unwrap();
            *guard = 2;
            panic!("poison the mutex");
        })
        .join();
        assert!(mutex.is_poisoned());
        assert_eq!(*lock(&mutex), 2);
    }
}
