//! The deterministic split of a replica's `concurrency` slots over the live
//! gateways: every gateway computes the same split from the same inputs,
//! with no message exchanged.
//!
//! Slot `j` of replica `r` belongs to gateway `(j + h(r)) mod n`, where `n`
//! is the number of gateways, gateways are indexed in sorted order and `h`
//! is a stable hash of the replica's id. The rotation by `h(r)` spreads the
//! remainder (`concurrency mod n`) over the gateways replica by replica, so
//! with many replicas no gateway is always the one with the extra slot.

/// FNV-1a, 64 bits: stable across builds, platforms and Rust versions
/// (std's `DefaultHasher` promises none of that), and every gateway must
/// hash a replica id alike.
pub fn stable_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The slots of a replica with `concurrency` slots that gateway `me` (its
/// index in the sorted gateway set) of `gateways` owns, the replica's id
/// hashing to `hash`. The shares of all gateways add up to `concurrency`.
/// With no gateway (`gateways == 0`) nobody owns anything.
pub fn share(concurrency: u32, gateways: usize, me: usize, hash: u64) -> u32 {
    let Ok(n) = u32::try_from(gateways) else {
        return 0;
    };
    let Ok(me) = u32::try_from(me) else {
        return 0;
    };
    if n == 0 || me >= n {
        return 0;
    }
    // Slot j is ours when (j + h) mod n == me, i.e. j ≡ me - h (mod n):
    // the first such j is `first`, then every n-th.
    let h = u32::try_from(hash % u64::from(n)).unwrap_or(0);
    let first = (me + n - h) % n;
    if first >= concurrency {
        0
    } else {
        (concurrency - first).div_ceil(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share by counting the slots one by one, as the module doc says.
    fn counted(concurrency: u32, n: usize, me: usize, hash: u64) -> u32 {
        (0..u64::from(concurrency))
            .filter(|j| (j + hash) % n as u64 == me as u64)
            .count() as u32
    }

    #[test]
    fn shares_match_the_slot_rule_and_add_up() {
        for concurrency in 0..40 {
            for n in 1..9 {
                for hash in 0..20u64 {
                    let shares: Vec<u32> =
                        (0..n).map(|me| share(concurrency, n, me, hash)).collect();
                    for (me, &s) in shares.iter().enumerate() {
                        assert_eq!(
                            s,
                            counted(concurrency, n, me, hash),
                            "c={concurrency} n={n} me={me} h={hash}"
                        );
                    }
                    assert_eq!(
                        shares.iter().sum::<u32>(),
                        concurrency,
                        "c={concurrency} n={n} h={hash}"
                    );
                    let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                    assert!(hi - lo <= 1, "uneven split {shares:?}");
                }
            }
        }
    }

    #[test]
    fn nobody_outside_the_set_owns_slots() {
        assert_eq!(share(4, 0, 0, 7), 0);
        assert_eq!(share(4, 2, 2, 7), 0);
        assert_eq!(share(4, 1, 0, 7), 4);
    }

    #[test]
    fn the_remainder_rotates_over_replicas() {
        // With 3 gateways and 4 slots, one gateway has 2: which one depends
        // on the replica, so over many replicas each gets the extra slot.
        let mut extra = [0u32; 3];
        for r in 0..300 {
            let h = stable_hash(&format!("replica-{r}"));
            for (me, e) in extra.iter_mut().enumerate() {
                if share(4, 3, me, h) == 2 {
                    *e += 1;
                }
            }
        }
        assert!(extra.iter().all(|&e| e > 60), "{extra:?}");
    }

    #[test]
    fn the_hash_is_fnv1a() {
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
