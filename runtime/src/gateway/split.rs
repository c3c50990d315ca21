//! Traffic split: picks a revision by the resolved percentages.

/// One revision's slice of the traffic: it takes draws below `upto` and at
/// or above the previous slice's `upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Cumulative percent up to and including this slice.
    pub upto: u32,
    /// Index of the revision in the Function's revision list.
    pub revision: usize,
}

/// Builds cumulative slices from `(revision index, percent)` pairs; slices
/// of 0 % are left out, so they can never be drawn.
pub fn shares(parts: impl IntoIterator<Item = (usize, u32)>) -> Vec<Share> {
    let mut upto = 0u32;
    parts
        .into_iter()
        .filter(|(_, percent)| *percent > 0)
        .map(|(revision, percent)| {
            upto = upto.saturating_add(percent);
            Share { upto, revision }
        })
        .collect()
}

/// The sum of all slices (100 for a valid split): draws range over `0..total`.
pub fn total(shares: &[Share]) -> u32 {
    shares.last().map_or(0, |s| s.upto)
}

/// The revision that draw `r` (in `0..total`) falls on.
pub fn pick(shares: &[Share], r: u32) -> Option<usize> {
    shares.iter().find(|s| r < s.upto).map(|s| s.revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_fall_on_their_slice() {
        let s = shares([(0, 90), (1, 0), (2, 10)]);
        assert_eq!(total(&s), 100);
        let cases = [
            (0, Some(0)),
            (89, Some(0)),
            (90, Some(2)),
            (99, Some(2)),
            (100, None),
        ];
        for (r, want) in cases {
            assert_eq!(pick(&s, r), want, "draw {r}");
        }
    }

    #[test]
    fn every_draw_counts_once_so_percentages_are_exact() {
        let s = shares([(0, 25), (1, 50), (2, 25)]);
        let mut counts = [0; 3];
        for r in 0..total(&s) {
            counts[pick(&s, r).unwrap()] += 1;
        }
        assert_eq!(counts, [25, 50, 25]);
    }

    #[test]
    fn empty_split_picks_nothing() {
        let s = shares([(0, 0)]);
        assert_eq!(total(&s), 0);
        assert_eq!(pick(&s, 0), None);
    }
}
