//! One replica's slots at this gateway, shared by every worker thread: the
//! admission limit and the in-flight count in one atomic word (so a request
//! taking a slot and a peer borrowing one can never both take the last
//! one), and the rest of the ledger behind a lock that only the lending,
//! borrowing and membership paths take.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flint_api::sync::lock;

use super::ledger::{self, Holding};

/// The admission limit of a replica whose slots are not shared (one
/// gateway, or `concurrency: 0`): the route's `concurrency` alone applies.
pub const UNSHARED: u32 = u32::MAX;

fn pack(limit: u32, in_flight: u32) -> u64 {
    (u64::from(limit) << 32) | u64::from(in_flight)
}

fn unpack(word: u64) -> (u32, u32) {
    // Truncation is the point: the two halves of the word.
    ((word >> 32) as u32, word as u32)
}

/// The part of the ledger that only changes off the request path.
#[derive(Debug, Default)]
struct Ledger {
    /// Busy slots promised to peers ([`Holding::released`]).
    released: u32,
    /// When slots were last released, to take back those nobody collects.
    released_at: Option<Instant>,
    /// Slots of this gateway's share it gets once a change settles.
    pending: u32,
    /// This gateway's share under the split.
    fair: u32,
}

/// A replica's slots at this gateway.
#[derive(Debug)]
pub struct Slots {
    /// `limit << 32 | in_flight`.
    word: AtomicU64,
    ledger: Mutex<Ledger>,
}

impl Slots {
    /// Slots of a replica that is not shared: the route's limit applies.
    pub fn unshared() -> Self {
        Self {
            word: AtomicU64::new(pack(UNSHARED, 0)),
            ledger: Mutex::new(Ledger::default()),
        }
    }

    /// Slots of a shared replica whose share here is `share`: usable at
    /// once when the gateway set has settled, else only once it has
    /// (`pending` until then).
    pub fn shared(share: u32, settled: bool) -> Self {
        let (limit, pending) = if settled { (share, 0) } else { (0, share) };
        Self {
            word: AtomicU64::new(pack(limit, 0)),
            ledger: Mutex::new(Ledger {
                pending,
                fair: share,
                ..Ledger::default()
            }),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        unpack(self.word.load(Ordering::Acquire)).1
    }

    /// The admission limit ([`UNSHARED`] when not shared).
    pub fn limit(&self) -> u32 {
        unpack(self.word.load(Ordering::Acquire)).0
    }

    /// Takes a slot if fewer than `min(route_limit, limit)` requests are in
    /// flight (`route_limit == 0`: no limit at all). The request path's one
    /// atomic operation, as before slots were shared.
    pub fn try_take(&self, route_limit: u32) -> bool {
        self.word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let (limit, in_flight) = unpack(word);
                let cap = if route_limit == 0 {
                    u32::MAX
                } else {
                    route_limit.min(limit)
                };
                (in_flight < cap).then_some(word + 1)
            })
            .is_ok()
    }

    /// Frees a slot taken with [`Slots::try_take`].
    pub fn put_back(&self) {
        self.word.fetch_sub(1, Ordering::AcqRel);
    }

    /// Applies `change` to the holding, atomically with admissions.
    /// Returns the holding before and after, or `None` when not shared.
    fn update(
        &self,
        ledger: &mut Ledger,
        mut change: impl FnMut(Holding) -> Holding,
    ) -> Option<(Holding, Holding)> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let (limit, in_flight) = unpack(word);
            if limit == UNSHARED {
                return None;
            }
            let before = Holding {
                limit,
                in_flight,
                released: ledger.released,
            };
            let after = change(before);
            match self.word.compare_exchange_weak(
                word,
                pack(after.limit, in_flight),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    ledger.released = after.released;
                    return Some((before, after));
                }
                Err(now) => word = now,
            }
        }
    }

    /// A peer asks for `want` slots ([`ledger::lend`]); `waiting` says
    /// whether requests wait here. Returns the slots handed over, already
    /// gone from this gateway's limit.
    pub fn lend(&self, waiting: bool, want: u32, now: Instant) -> u32 {
        let mut ledger = self.ledger();
        let fair = ledger.fair;
        let mut give = 0;
        let changed = self.update(&mut ledger, |h| {
            let lent = ledger::lend(h, fair, waiting, want);
            give = lent.give;
            lent.holding
        });
        if let Some((before, after)) = changed
            && after.released > before.released
        {
            ledger.released_at = Some(now);
        }
        give
    }

    /// A peer handed over `got` slots of a replica with `concurrency`;
    /// `false` (and the slots are dropped, which can only lower the total)
    /// when this replica is not shared.
    pub fn borrow(&self, got: u32, concurrency: u32) -> bool {
        let mut ledger = self.ledger();
        self.update(&mut ledger, |h| ledger::borrow(h, got, concurrency))
            .is_some()
    }

    /// Takes back released slots that no peer collected within `after`;
    /// returns whether there were any.
    pub fn reclaim_stale(&self, now: Instant, after: Duration) -> bool {
        let mut ledger = self.ledger();
        let stale = ledger.released > 0
            && ledger
                .released_at
                .is_some_and(|at| now.saturating_duration_since(at) >= after);
        if !stale {
            return false;
        }
        ledger.released_at = None;
        self.update(&mut ledger, ledger::reclaim).is_some()
    }

    /// The gateway set or the replica's `concurrency` changed: this
    /// gateway's share is now `share` ([`ledger::reshare`]). A replica that
    /// was not shared starts from nothing, its share pending.
    pub fn reshare(&self, share: u32) {
        let mut ledger = self.ledger();
        ledger.fair = share;
        ledger.released_at = None;
        let mut pending = share;
        let word = self.word.load(Ordering::Acquire);
        if unpack(word).0 == UNSHARED {
            // From unshared to shared: own nothing until the change settles.
            self.word
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                    Some(pack(0, unpack(w).1))
                })
                .ok();
            ledger.released = 0;
        } else {
            self.update(&mut ledger, |h| {
                let (next, rest) = ledger::reshare(h, share);
                pending = rest;
                next
            });
        }
        ledger.pending = pending;
    }

    /// The change settled: the pending part of the share of a replica
    /// with `concurrency` becomes usable.
    pub fn settle(&self, concurrency: u32) {
        let mut ledger = self.ledger();
        let pending = std::mem::take(&mut ledger.pending);
        if pending > 0 {
            self.update(&mut ledger, |h| ledger::borrow(h, pending, concurrency));
        }
    }

    /// Busy slots released for peers, handed to the next ask once free.
    pub fn released(&self) -> u32 {
        self.ledger().released
    }

    /// Slots owned here now (`limit + released`), for tests and logs;
    /// `None` when not shared.
    pub fn owned(&self) -> Option<u32> {
        let ledger = self.ledger();
        let (limit, _) = unpack(self.word.load(Ordering::Acquire));
        (limit != UNSHARED).then(|| limit.saturating_add(ledger.released))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshared_slots_follow_the_route_limit() {
        let s = Slots::unshared();
        assert!((0..3).all(|_| s.try_take(3)));
        assert!(!s.try_take(3));
        s.put_back();
        assert!(s.try_take(3));
        assert!(s.try_take(0), "concurrency 0 has no limit");
        assert_eq!(s.in_flight(), 4);
        assert_eq!(s.lend(false, 2, Instant::now()), 0, "nothing to lend");
        assert_eq!(s.owned(), None);
    }

    #[test]
    fn shared_slots_admit_within_the_share_and_lend_free_ones() {
        let now = Instant::now();
        let s = Slots::shared(2, true);
        assert!(s.try_take(4));
        assert!(!s.try_take(4) || s.in_flight() == 2);
        assert_eq!(s.in_flight(), 2);
        assert!(!s.try_take(4), "share is 2 though the route allows 4");
        assert_eq!(s.lend(false, 3, now), 0, "both busy");
        s.put_back();
        assert_eq!(s.lend(false, 3, now), 1);
        assert_eq!(s.owned(), Some(1));
        assert!(!s.try_take(4), "the lent slot is gone");
        assert!(s.borrow(3, 4));
        assert_eq!(s.limit(), 4);
        assert!(s.try_take(4));
        assert!(!s.try_take(4) || s.in_flight() <= 4);
    }

    #[test]
    fn released_slots_are_handed_over_or_taken_back() {
        let t0 = Instant::now();
        let s = Slots::shared(1, true);
        assert!(s.borrow(3, 4));
        assert!((0..4).all(|_| s.try_take(4)));
        // A peer asks while all four are busy and requests wait here.
        assert_eq!(s.lend(true, 2, t0), 0);
        assert_eq!((s.limit(), s.owned()), (2, Some(4)));
        s.put_back();
        s.put_back();
        assert!(!s.try_take(4), "two in flight, limit 2");
        assert!(!s.reclaim_stale(t0, Duration::from_millis(500)));
        assert!(s.reclaim_stale(t0 + Duration::from_secs(1), Duration::from_millis(500)));
        assert_eq!((s.limit(), s.owned()), (4, Some(4)));
    }

    #[test]
    fn a_reshare_waits_for_the_settle_to_grow() {
        let s = Slots::shared(2, true);
        assert!(s.borrow(2, 4));
        assert!((0..3).all(|_| s.try_take(4)));
        s.reshare(1);
        assert_eq!(s.limit(), 1, "shrinks at once");
        assert!(!s.try_take(4));
        s.settle(4);
        assert_eq!(s.limit(), 1, "nothing pending");
        s.reshare(3);
        assert_eq!(s.limit(), 1, "owns 1, share 3: grows only at the settle");
        s.settle(4);
        assert_eq!(s.limit(), 3);
        assert!(s.borrow(2, 4));
        s.reshare(2);
        assert_eq!(s.limit(), 2, "owns 5, share 2: keeps 2");
        let fresh = Slots::shared(2, false);
        assert!(!fresh.try_take(4));
        fresh.settle(4);
        assert!(fresh.try_take(4) && fresh.try_take(4) && !fresh.try_take(4));
        let was_alone = Slots::unshared();
        assert!(was_alone.try_take(4));
        was_alone.reshare(2);
        assert_eq!(was_alone.limit(), 0);
        was_alone.settle(4);
        assert_eq!(was_alone.limit(), 2);
    }
}
