//! Replica choice: power of two choices on in-flight count, never past a
//! replica's `concurrency` limit.

use std::sync::atomic::{AtomicU32, Ordering};

/// A replica's in-flight counter.
pub trait Load {
    /// Requests in flight now.
    fn load(&self) -> u32;
    /// Takes one slot if fewer than `limit` are in flight (`0` = no limit).
    fn try_take(&self, limit: u32) -> bool;
}

impl Load for AtomicU32 {
    fn load(&self) -> u32 {
        AtomicU32::load(self, Ordering::Acquire)
    }

    fn try_take(&self, limit: u32) -> bool {
        if limit == 0 {
            self.fetch_add(1, Ordering::AcqRel);
            return true;
        }
        self.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
    }
}

impl<L: Load> Load for std::sync::Arc<L> {
    fn load(&self) -> u32 {
        L::load(self)
    }

    fn try_take(&self, limit: u32) -> bool {
        L::try_take(self, limit)
    }
}

/// Two distinct indices in `0..n` from two random draws (equal when `n == 1`).
pub fn candidates(n: usize, r1: usize, r2: usize) -> (usize, usize) {
    let a = r1 % n;
    if n < 2 {
        return (a, a);
    }
    // Offset in 1..n so that b != a.
    let b = (a + 1 + r2 % (n - 1)) % n;
    (a, b)
}

/// Takes a slot on the less loaded of two random replicas, else on the
/// other, else (when both are at their limit) on any replica with room,
/// scanning from the first candidate. Returns the index, or `None` when every
/// replica is full or there is none.
pub fn take<L: Load>(replicas: &[L], limit: u32, r1: usize, r2: usize) -> Option<usize> {
    let n = replicas.len();
    if n == 0 {
        return None;
    }
    let (a, b) = candidates(n, r1, r2);
    let (first, second) = if replicas[b].load() < replicas[a].load() {
        (b, a)
    } else {
        (a, b)
    };
    if replicas[first].try_take(limit) {
        return Some(first);
    }
    if second != first && replicas[second].try_take(limit) {
        return Some(second);
    }
    (0..n)
        .map(|k| (a + k) % n)
        .find(|&i| i != first && i != second && replicas[i].try_take(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(v: &[u32]) -> Vec<AtomicU32> {
        v.iter().map(|&n| AtomicU32::new(n)).collect()
    }

    #[test]
    fn candidates_are_distinct_and_in_range() {
        for n in 2..7 {
            for r1 in 0..10 {
                for r2 in 0..10 {
                    let (a, b) = candidates(n, r1, r2);
                    assert!(a < n && b < n && a != b, "n={n} r=({r1},{r2})");
                }
            }
        }
        assert_eq!(candidates(1, 5, 9), (0, 0));
    }

    /// (loads, limit, r1, r2, chosen)
    type Case = (&'static [u32], u32, usize, usize, Option<usize>);

    #[test]
    fn picks_by_load_and_limit() {
        let cases: [Case; 8] = [
            (&[], 0, 0, 0, None),
            (&[7], 0, 3, 4, Some(0)),
            (&[5, 2, 9], 0, 0, 0, Some(1)), // candidates 0 and 1: 1 is lighter
            (&[1, 2, 9], 0, 0, 0, Some(0)), // 0 is lighter
            (&[1, 1], 0, 1, 0, Some(1)),    // tie: first candidate
            (&[2, 2, 0], 2, 0, 0, Some(2)), // both candidates full: scan finds 2
            (&[2, 1, 2], 2, 0, 1, Some(1)), // candidates 0 and 2 full, scan finds 1
            (&[1, 1, 1], 1, 2, 5, None),    // all full
        ];
        for (load, limit, r1, r2, want) in cases {
            let replicas = loads(load);
            let got = take(&replicas, limit, r1, r2);
            assert_eq!(got, want, "{load:?} limit {limit} draws ({r1},{r2})");
            if let Some(i) = got {
                assert_eq!(replicas[i].load(Ordering::Relaxed), load[i] + 1);
            }
        }
    }

    #[test]
    fn a_limit_is_never_exceeded() {
        let replicas = loads(&[0, 0]);
        let taken = (0..10)
            .filter(|&r| take(&replicas, 3, r, r * 7).is_some())
            .count();
        assert_eq!(taken, 6);
        assert!(replicas.iter().all(|r| r.load(Ordering::Relaxed) == 3));
    }
}
