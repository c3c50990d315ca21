//! The settle record of an invocation in [`super::SETTLED_STREAM`]: one
//! message per invocation (subject `flint.settled.<hex key>`, the latest
//! kept) saying either that it is settled, or how many of its delivery
//! attempts have failed so far.
//!
//! Why the attempt count lives here and not in JetStream's delivery
//! count: JetStream counts every delivery of a message, including those
//! that were never attempted — a batch handed back (negatively
//! acknowledged) because the settle records could not be read, a lease
//! that ran out while the server was away, a fetch cut short by a
//! stopping worker. Taking that count as the attempt number would use up
//! a Function's `maxRetries` on hand-backs. So only a real failed attempt
//! counts: [`super::NatsQueue`]'s `retry` writes `failed <n>` here before
//! the delayed NAK that schedules attempt n + 1, and a delivery's attempt
//! is the failures recorded + 1. A hand-back writes nothing and costs no
//! attempt. (Raising `max_deliver` by the hand-backs would not do: it is
//! per consumer, and it is unlimited already; what matters is the attempt
//! number the retry policy judges.)
//!
//! A delivery cut off by a crashed worker is not counted either: its
//! function may have run, and it is retried as the same attempt (the
//! function can deduplicate on `X-Flint-Invocation-Id`; `maxAge` still
//! ends an invocation that keeps crashing its workers).

/// What the settle record of one invocation says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleRecord {
    /// No record: nothing was attempted and failed (or the record aged out).
    None,
    /// This many attempts failed; the invocation is pending.
    Failed(u32),
    /// Delivered or dead-lettered: a redelivery is only acknowledged.
    Settled,
}

/// Prefix of a failed-attempts record's payload.
const FAILED: &str = "failed ";

impl SettleRecord {
    /// Reads a record's payload. Empty means settled (what earlier versions
    /// wrote, and still the settled form); `failed <n>` counts failures.
    /// Anything else is taken as "not settled" so the invocation is still
    /// delivered: a record never makes an invocation vanish by accident.
    pub fn decode(payload: &[u8]) -> Self {
        if payload.is_empty() {
            return Self::Settled;
        }
        std::str::from_utf8(payload)
            .ok()
            .and_then(|p| p.strip_prefix(FAILED))
            .and_then(|n| n.parse().ok())
            .map_or(Self::None, Self::Failed)
    }

    /// The payload recording that `attempts` attempts failed.
    pub fn failed_payload(attempts: u32) -> bytes::Bytes {
        bytes::Bytes::from(format!("{FAILED}{attempts}"))
    }

    /// The number of the next attempt (from 1).
    pub fn next_attempt(self) -> u32 {
        match self {
            Self::Failed(n) => n.saturating_add(1),
            Self::None | Self::Settled => 1,
        }
    }
}

/// The settle-record subject of an invocation key `<ns>/<fn>/<id>` (hex:
/// keys hold characters subjects may not).
pub fn subject(key: &str) -> String {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    format!("flint.settled.{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_as_written() {
        let table: [(&[u8], SettleRecord, u32); 6] = [
            (b"", SettleRecord::Settled, 1),
            (b"failed 1", SettleRecord::Failed(1), 2),
            (b"failed 7", SettleRecord::Failed(7), 8),
            (b"failed x", SettleRecord::None, 1),
            (b"\xff\xfe", SettleRecord::None, 1),
            (b"something newer", SettleRecord::None, 1),
        ];
        for (payload, record, next) in table {
            assert_eq!(SettleRecord::decode(payload), record, "{payload:?}");
            assert_eq!(record.next_attempt(), next, "{payload:?}");
        }
        assert_eq!(
            SettleRecord::decode(&SettleRecord::failed_payload(3)),
            SettleRecord::Failed(3)
        );
        assert_eq!(SettleRecord::Failed(u32::MAX).next_attempt(), u32::MAX);
    }

    #[test]
    fn subjects_are_hex_of_the_key() {
        assert_eq!(subject("a/b"), "flint.settled.612f62");
    }
}
