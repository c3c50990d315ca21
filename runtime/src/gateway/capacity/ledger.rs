//! The accounting of one replica's slots at one gateway, as pure functions
//! of plain numbers: what a lender gives, what it stops admitting, what a
//! membership change does. `slots.rs` applies them atomically.
//!
//! A gateway's slots on a replica are `limit + released`:
//! - `limit`: how many requests it may have in flight there (admission);
//! - `released`: slots it has promised to hand over, busy when promised,
//!   handed to the next peer that asks once they are free.
//!
//! `in_flight ≤ limit + released` always: a gateway never has more
//! requests on a replica than slots it owns. Lending moves slots out of
//! `limit + released` before the answer is sent, so the sum over gateways
//! (plus slots in transit, which count for nobody) never grows.

/// One gateway's slots on one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    /// Requests it may have in flight (admission limit).
    pub limit: u32,
    /// Requests it has in flight.
    pub in_flight: u32,
    /// Slots promised to peers, handed over once free.
    pub released: u32,
}

/// What a lender does when a peer asks for `want` slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lent {
    /// Slots handed to the peer now (free ones).
    pub give: u32,
    /// The lender's slots afterwards.
    pub holding: Holding,
}

impl Holding {
    /// Slots owned, busy or not.
    pub fn owned(self) -> u32 {
        self.limit.saturating_add(self.released)
    }

    /// Owned slots with no request on them.
    pub fn free(self) -> u32 {
        self.owned().saturating_sub(self.in_flight)
    }
}

/// A peer asks for `want` slots. The lender gives free slots (released
/// ones first), keeping `fair` (its share under the split) when it has
/// `waiting` requests of its own; a lender with nobody waiting gives every
/// free slot, since nobody here would use it. If that is less than `want`,
/// the lender also stops admitting on busy slots above its fair share:
/// they move to `released`, for the peer's next ask once they are free.
pub fn lend(h: Holding, fair: u32, waiting: bool, want: u32) -> Lent {
    let keep = if waiting { fair } else { 0 };
    let give = want.min(h.free()).min(h.owned().saturating_sub(keep));
    let from_released = give.min(h.released);
    let mut next = Holding {
        limit: h.limit.saturating_sub(give - from_released),
        in_flight: h.in_flight,
        released: h.released - from_released,
    };
    let shrink = (want - give).min(next.limit.saturating_sub(fair));
    next.limit -= shrink;
    next.released += shrink;
    Lent {
        give,
        holding: next,
    }
}

/// A peer handed over `got` slots (or a change settled and the rest of
/// the share came): never more than `concurrency` owned here, whatever a
/// peer says; past it, slots are dropped, which only lowers the total.
pub fn borrow(h: Holding, got: u32, concurrency: u32) -> Holding {
    Holding {
        limit: h
            .limit
            .saturating_add(got)
            .min(concurrency.saturating_sub(h.released)),
        ..h
    }
}

/// Takes released slots back into the admission limit: nobody collected
/// them (the peer that asked got enough elsewhere, or its requests left).
pub fn reclaim(h: Holding) -> Holding {
    Holding {
        limit: h.owned(),
        in_flight: h.in_flight,
        released: 0,
    }
}

/// The gateway set (or the replica's `concurrency`) changed and this
/// gateway's share is now `share`. It keeps at most that much of what it
/// owns now (borrowed and released slots are forgotten: every gateway
/// starts over from the split), and gets the rest of its share, `pending`,
/// only once the change has settled, when every gateway has shrunk to its
/// own new share. Returns the holding and `pending`.
pub fn reshare(h: Holding, share: u32) -> (Holding, u32) {
    let limit = h.owned().min(share);
    (
        Holding {
            limit,
            in_flight: h.in_flight,
            released: 0,
        },
        share - limit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every holding with `in_flight ≤ limit + released`, small numbers.
    fn holdings() -> impl Iterator<Item = Holding> {
        (0..7).flat_map(|limit| {
            (0..5).flat_map(move |released| {
                (0..=limit + released).map(move |in_flight| Holding {
                    limit,
                    in_flight,
                    released,
                })
            })
        })
    }

    #[test]
    fn lending_conserves_slots_and_keeps_the_fair_share() {
        for h in holdings() {
            for fair in 0..6 {
                for waiting in [false, true] {
                    for want in 0..8 {
                        let Lent { give, holding: n } = lend(h, fair, waiting, want);
                        let case = format!(
                            "{h:?} fair={fair} waiting={waiting} want={want} -> give {give}, {n:?}"
                        );
                        assert_eq!(n.owned() + give, h.owned(), "conserved: {case}");
                        assert!(give <= want && give <= h.free(), "only free slots: {case}");
                        assert!(n.in_flight <= n.owned(), "owns its requests: {case}");
                        let kept = if waiting { 0 } else { give };
                        assert!(
                            n.limit >= h.limit.min(fair).saturating_sub(kept),
                            "admits its share: {case}"
                        );
                        assert!(n.limit <= h.limit, "never admits more: {case}");
                        assert!(h.limit - n.limit <= want, "no more than asked: {case}");
                        if waiting {
                            assert!(n.owned() >= h.owned().min(fair), "keeps its share: {case}");
                        } else {
                            assert!(
                                give == want || n.free() == 0,
                                "gives all it can spare: {case}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn an_idle_lender_gives_everything_free() {
        let h = Holding {
            limit: 2,
            in_flight: 0,
            released: 0,
        };
        let lent = lend(h, 2, false, 4);
        assert_eq!(lent.give, 2);
        assert_eq!(
            lent.holding,
            Holding {
                limit: 0,
                in_flight: 0,
                released: 0
            }
        );
    }

    #[test]
    fn a_busy_lender_with_a_backlog_releases_what_is_above_its_share() {
        // It borrowed everything (4), its share is 2, all 4 are busy.
        let h = Holding {
            limit: 4,
            in_flight: 4,
            released: 0,
        };
        let lent = lend(h, 2, true, 1);
        assert_eq!(lent.give, 0);
        assert_eq!(
            lent.holding,
            Holding {
                limit: 3,
                in_flight: 4,
                released: 1
            }
        );
        // Once one request finished, the next ask gets the released slot.
        let later = Holding {
            in_flight: 3,
            ..lent.holding
        };
        let lent = lend(later, 2, true, 1);
        assert_eq!(lent.give, 1);
        assert_eq!(
            lent.holding,
            Holding {
                limit: 3,
                in_flight: 3,
                released: 0
            }
        );
        // Down to its share, it gives nothing more while it has a backlog.
        let at_share = Holding {
            limit: 2,
            in_flight: 2,
            released: 0,
        };
        assert_eq!(lend(at_share, 2, true, 3).give, 0);
        assert_eq!(lend(at_share, 2, true, 3).holding, at_share);
    }

    #[test]
    fn borrowing_and_reclaiming_add_to_the_limit() {
        let h = Holding {
            limit: 1,
            in_flight: 1,
            released: 2,
        };
        assert_eq!(borrow(h, 3, 8).limit, 4);
        assert_eq!(borrow(h, 3, 4).limit, 2, "owns at most concurrency");
        assert_eq!(borrow(h, 300, 4).owned(), 4);
        assert_eq!(
            reclaim(h),
            Holding {
                limit: 3,
                in_flight: 1,
                released: 0
            }
        );
    }

    #[test]
    fn a_reshare_never_grows_before_settling() {
        for h in holdings() {
            for share in 0..8 {
                let (n, pending) = reshare(h, share);
                assert!(
                    n.limit <= h.owned() && n.limit <= share,
                    "{h:?} share {share}"
                );
                assert_eq!(n.limit + pending, share, "{h:?} share {share}");
                assert_eq!(n.released, 0);
            }
        }
    }
}
