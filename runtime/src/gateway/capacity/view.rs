//! The live gateway set as one gateway sees it, and the split it implies.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::split;

/// The most gateways a view holds; more are ignored (and logged), so a
/// view, and each round of asks, stays bounded.
pub const MAX_GATEWAYS: usize = 64;

/// The gateways (by admin address, sorted) that share replicas' slots, and
/// where this gateway stands among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Ready gateways, sorted, at most [`MAX_GATEWAYS`].
    members: Vec<SocketAddr>,
    /// This gateway's admin address.
    me: SocketAddr,
    /// Counts changes, so a settle timer knows whether it is still current.
    pub epoch: u64,
    /// When this view replaced the last one.
    pub since: Instant,
}

impl View {
    /// The view of gateway `me` given the ready gateways `ready` (which
    /// may or may not include `me`: a gateway not yet ready owns no slot
    /// and only borrows). With no ready gateway at all, `me` is alone: the
    /// first gateway of an install is, and so is a gateway whose peer
    /// Service is misnamed, which then behaves as a single gateway rather
    /// than owning nothing.
    pub fn new(me: SocketAddr, mut ready: Vec<SocketAddr>, epoch: u64, since: Instant) -> Self {
        if ready.is_empty() {
            ready.push(me);
        }
        ready.sort_unstable();
        ready.dedup();
        if ready.len() > MAX_GATEWAYS {
            tracing::warn!(
                gateways = ready.len(),
                max = MAX_GATEWAYS,
                "more gateways than slots are split over; ignoring the rest"
            );
            ready.truncate(MAX_GATEWAYS);
        }
        Self {
            members: ready,
            me,
            epoch,
            since,
        }
    }

    /// Whether `ready` lists the same gateways as this view.
    pub fn same_members(&self, me: SocketAddr, ready: &[SocketAddr]) -> bool {
        let mut ready = if ready.is_empty() {
            vec![me]
        } else {
            ready.to_vec()
        };
        ready.sort_unstable();
        ready.dedup();
        ready.truncate(MAX_GATEWAYS);
        self.me == me && self.members == ready
    }

    /// This gateway's share of a replica with `concurrency` slots and id
    /// `replica`: zero when it is not in the set.
    pub fn share(&self, concurrency: u32, replica: &str) -> u32 {
        match self.members.binary_search(&self.me) {
            Ok(me) => split::share(
                concurrency,
                self.members.len(),
                me,
                split::stable_hash(replica),
            ),
            Err(_) => 0,
        }
    }

    /// The other gateways, to borrow from.
    pub fn peers(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.members.iter().copied().filter(|m| *m != self.me)
    }

    /// Whether there is any other gateway.
    pub fn has_peers(&self) -> bool {
        self.peers().next().is_some()
    }

    /// Whether the view is at least `settle` old, so every gateway has had
    /// time to see it and shrink to its new share; a gateway alone has
    /// nobody to wait for.
    pub fn settled(&self, now: Instant, settle: Duration) -> bool {
        !self.has_peers() || now.saturating_duration_since(self.since) >= settle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn every_member_computes_its_own_part_of_one_split() {
        let all = vec![addr(3), addr(1), addr(2)];
        let now = Instant::now();
        for replica in ["a", "b", "pod-7"] {
            let total: u32 = all
                .iter()
                .map(|&me| View::new(me, all.clone(), 1, now).share(4, replica))
                .sum();
            assert_eq!(total, 4, "{replica}");
        }
        let outsider = View::new(addr(9), all.clone(), 1, now);
        assert_eq!(outsider.share(4, "a"), 0);
        assert_eq!(outsider.peers().count(), 3);
        let member = View::new(addr(2), all.clone(), 1, now);
        assert_eq!(member.peers().collect::<Vec<_>>(), vec![addr(1), addr(3)]);
        assert!(member.same_members(addr(2), &[addr(3), addr(2), addr(1), addr(1)]));
        assert!(!member.same_members(addr(2), &[addr(3), addr(2)]));
        let alone = View::new(addr(1), vec![addr(1)], 1, now);
        assert!(!alone.has_peers());
        assert!(
            alone.settled(now, Duration::from_secs(2)),
            "nobody to wait for"
        );
        assert!(!member.settled(now, Duration::from_secs(2)));
        assert!(member.settled(now + Duration::from_secs(2), Duration::from_secs(2)));
        // Nobody ready yet: the gateway is alone, not without slots.
        let first = View::new(addr(5), vec![], 1, now);
        assert_eq!(first.share(4, "a"), 4);
        assert!(first.same_members(addr(5), &[]));
    }

    #[test]
    fn views_are_bounded() {
        let many: Vec<SocketAddr> = (0..200).map(addr).collect();
        let v = View::new(addr(0), many, 1, Instant::now());
        assert_eq!(v.members.len(), MAX_GATEWAYS);
    }
}
