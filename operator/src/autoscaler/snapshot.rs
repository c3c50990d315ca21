//! What the keep-alive policy has learned about a revision, as the compact
//! string a Function's `status.keepAlive[].learned` holds: the idle-time
//! histogram, the requests since the last idle time, and when the last
//! activity ended (wall clock, while the revision is idle). A new operator
//! leader reads it back and decides as the old one would have.
//!
//! Format (version 1), then standard base64:
//! `version` byte, `flags` byte (1: last activity known, 2: it was observed,
//! 4: histogram), LEB128 varints for the last activity (Unix seconds) and the
//! requests since the last idle time, and for the histogram its
//! out-of-range count, requests and idle seconds, a 30-byte bitmap of the
//! non-empty bins and a varint per non-empty bin. Counts stay below 2^16
//! and sum to at most 65,535, so at most two bins need three bytes and the
//! worst case is about 550 bytes (730 base64 characters); a typical
//! function needs a few dozen.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::keepalive::{BINS, HistogramParts};

const VERSION: u8 = 1;
const HAS_LAST_ACTIVE: u8 = 1;
const OBSERVED: u8 = 2;
const HAS_HISTOGRAM: u8 = 4;
const BITMAP_BYTES: usize = BINS.div_ceil(8);

/// A revision's learned keep-alive state, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// When the last activity ended, in Unix seconds; `None` while the
    /// revision serves (or never did): a new leader then counts it active.
    pub last_active_unix: Option<u64>,
    /// Whether that end was observed (only then is the next gap an idle time).
    pub last_active_observed: bool,
    /// Requests since the last idle time (learned policy).
    pub requests_since_idle: u32,
    /// The idle-time histogram, if one was started.
    pub histogram: Option<HistogramParts>,
}

/// Why a persisted string could not be read back (it is then ignored: the
/// revision starts learning afresh).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not base64.
    #[error("not base64: {0}")]
    Base64(String),
    /// Written by a newer format.
    #[error("unknown format version {0}")]
    Version(u8),
    /// Ends early.
    #[error("truncated")]
    Truncated,
    /// A number out of its range.
    #[error("a count out of range")]
    Range,
    /// Bytes past the end.
    #[error("{0} bytes past the end")]
    Trailing(usize),
}

impl Snapshot {
    /// The compact string for `status.keepAlive[].learned`.
    pub fn encode(&self) -> String {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        let mut flags = 0;
        if self.last_active_unix.is_some() {
            flags |= HAS_LAST_ACTIVE;
        }
        if self.last_active_observed {
            flags |= OBSERVED;
        }
        if self.histogram.is_some() {
            flags |= HAS_HISTOGRAM;
        }
        out.push(flags);
        if let Some(at) = self.last_active_unix {
            put(&mut out, at);
        }
        put(&mut out, u64::from(self.requests_since_idle));
        if let Some(h) = &self.histogram {
            put(&mut out, u64::from(h.out_of_range));
            put(&mut out, u64::from(h.requests));
            put(&mut out, u64::from(h.idle_secs));
            let mut bitmap = [0u8; BITMAP_BYTES];
            for (i, _) in h.bins.iter().enumerate().filter(|&(_, &c)| c > 0) {
                bitmap[i / 8] |= 1 << (i % 8);
            }
            out.extend_from_slice(&bitmap);
            for &c in h.bins.iter().filter(|&&c| c > 0) {
                put(&mut out, u64::from(c));
            }
        }
        STANDARD.encode(out)
    }

    /// Reads back what [`Snapshot::encode`] wrote.
    pub fn decode(text: &str) -> Result<Self, SnapshotError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| SnapshotError::Base64(e.to_string()))?;
        let mut r = Reader {
            bytes: &bytes,
            at: 0,
        };
        let version = r.byte()?;
        if version != VERSION {
            return Err(SnapshotError::Version(version));
        }
        let flags = r.byte()?;
        let last_active_unix = if flags & HAS_LAST_ACTIVE != 0 {
            Some(r.varint()?)
        } else {
            None
        };
        let requests_since_idle = r.u32()?;
        let histogram = if flags & HAS_HISTOGRAM != 0 {
            let out_of_range = r.u16()?;
            let requests = r.u32()?;
            let idle_secs = r.u32()?;
            let mut bitmap = [0u8; BITMAP_BYTES];
            for b in &mut bitmap {
                *b = r.byte()?;
            }
            let mut bins = [0u16; BINS];
            let mut sum = u32::from(out_of_range);
            for (i, bin) in bins.iter_mut().enumerate() {
                if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                    *bin = r.u16()?;
                    sum += u32::from(*bin);
                }
            }
            // Bits past the last bin must be clear; counts sum as recorded.
            if sum > u32::from(u16::MAX) || bitmap_tail(&bitmap) != 0 {
                return Err(SnapshotError::Range);
            }
            Some(HistogramParts {
                bins,
                out_of_range,
                requests,
                idle_secs,
            })
        } else {
            None
        };
        if r.at != bytes.len() {
            return Err(SnapshotError::Trailing(bytes.len() - r.at));
        }
        Ok(Self {
            last_active_unix,
            last_active_observed: flags & OBSERVED != 0,
            requests_since_idle,
            histogram,
        })
    }
}

/// The bitmap's bits beyond [`BINS`].
fn bitmap_tail(bitmap: &[u8; BITMAP_BYTES]) -> u8 {
    match BINS % 8 {
        0 => 0,
        used => bitmap[BITMAP_BYTES - 1] >> used,
    }
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, SnapshotError> {
        let b = *self.bytes.get(self.at).ok_or(SnapshotError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, SnapshotError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(SnapshotError::Range);
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(SnapshotError::Range)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        u32::try_from(self.varint()?).map_err(|_| SnapshotError::Range)
    }

    fn u16(&mut self) -> Result<u16, SnapshotError> {
        u16::try_from(self.varint()?).map_err(|_| SnapshotError::Range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(fill: impl Fn(usize) -> u16, out_of_range: u16) -> HistogramParts {
        let mut bins = [0u16; BINS];
        for (i, b) in bins.iter_mut().enumerate() {
            *b = fill(i);
        }
        HistogramParts {
            bins,
            out_of_range,
            requests: 1234,
            idle_secs: 98_765,
        }
    }

    #[test]
    fn round_trips() {
        let cases = [
            Snapshot::default(),
            Snapshot {
                last_active_unix: Some(1_796_000_000),
                last_active_observed: true,
                requests_since_idle: 17,
                histogram: Some(parts(|i| u16::from(i % 7 == 0) * 3, 2)),
            },
            Snapshot {
                last_active_unix: None,
                last_active_observed: false,
                requests_since_idle: u32::MAX,
                histogram: Some(parts(|i| if i == BINS - 1 { 40_000 } else { 0 }, 0)),
            },
        ];
        for s in cases {
            assert_eq!(Snapshot::decode(&s.encode()), Ok(s));
        }
    }

    #[test]
    fn the_worst_case_fits_in_the_status_field() {
        // Every bin non-empty with two-byte counts, two with three bytes
        // (the most the 65,535 total allows alongside).
        let worst = Snapshot {
            last_active_unix: Some(u64::MAX),
            last_active_observed: true,
            requests_since_idle: u32::MAX,
            histogram: Some(HistogramParts {
                requests: u32::MAX,
                idle_secs: u32::MAX,
                ..parts(
                    |i| match i {
                        0..2 => 16_384,
                        _ => 128,
                    },
                    u16::try_from(65_535 - 2 * 16_384 - (BINS as u32 - 2) * 128).unwrap(),
                )
            }),
        };
        let text = worst.encode();
        assert!(text.len() <= 1024, "{} characters", text.len());
        assert_eq!(Snapshot::decode(&text), Ok(worst));
        // A typical learned function: a handful of bins.
        let typical = Snapshot {
            last_active_unix: Some(1_796_000_000),
            last_active_observed: true,
            requests_since_idle: 3,
            histogram: Some(parts(|i| if i % 60 == 4 { 9 } else { 0 }, 1)),
        };
        assert!(typical.encode().len() <= 80, "{}", typical.encode());
    }

    #[test]
    fn damaged_text_is_an_error_not_a_panic() {
        let good = Snapshot {
            last_active_unix: Some(5),
            last_active_observed: true,
            requests_since_idle: 1,
            histogram: Some(parts(|i| u16::from(i == 3), 0)),
        };
        let bytes = STANDARD.decode(good.encode()).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(
                Snapshot::decode(&STANDARD.encode(&bytes[..cut])),
                Err(SnapshotError::Truncated),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Snapshot::decode(&STANDARD.encode(&longer)),
            Err(SnapshotError::Trailing(1))
        );
        let mut newer = bytes.clone();
        newer[0] = 2;
        assert_eq!(
            Snapshot::decode(&STANDARD.encode(&newer)),
            Err(SnapshotError::Version(2))
        );
        assert!(matches!(
            Snapshot::decode("not base64!"),
            Err(SnapshotError::Base64(_))
        ));
        // Counts that sum past what a histogram can hold.
        let over = Snapshot {
            histogram: Some(parts(|i| if i < 2 { 40_000 } else { 0 }, 0)),
            ..Snapshot::default()
        };
        assert_eq!(Snapshot::decode(&over.encode()), Err(SnapshotError::Range));
        // Random bytes never panic.
        let mut x = 0x9e37_79b9_u32;
        for len in 0..200 {
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x & 0xff) as u8
                })
                .collect();
            let _ = Snapshot::decode(&STANDARD.encode(&noise));
        }
    }
}
