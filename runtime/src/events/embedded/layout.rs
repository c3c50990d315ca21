//! How the embedded store lays out what it keeps. Keys of the due and dead
//! tables are `<ns>/<fn>\0<ms, 20 digits>\0<id>`, so a Function's entries
//! sort together and by time; the invocation table's values are the
//! attempts made (`u32` BE) and the encoded invocation; the dead table's
//! are the reason's length (`u32` BE), the reason and the encoded
//! invocation. The tables themselves are defined with the writer
//! ([`super::writer`]), which also bumps the attempts of a retried record.

use crate::events::invocation::{FunctionKey, Invocation};
use crate::events::queue::{DeadLetter, QueueError};

/// What every key of `target` in the due and dead tables starts with.
pub(super) fn function_prefix(target: &FunctionKey) -> String {
    format!("{}/{}\0", target.namespace, target.function)
}

/// The due-table key of invocation `id` of `target`, due at `due_ms`.
pub(super) fn due_key(target: &FunctionKey, due_ms: u64, id: &str) -> String {
    format!("{}{due_ms:020}\0{id}", function_prefix(target))
}

/// The dead-table key of invocation `id` of `target`, dead-lettered at
/// `at_ms` (laid out as a due key).
pub(super) fn dead_key(target: &FunctionKey, at_ms: u64, id: &str) -> String {
    due_key(target, at_ms, id)
}

/// The due key of the invocation of `due_key`, due at `due_ms` instead.
pub(super) fn due_again(due_key: &str, due_ms: u64) -> String {
    let prefix_end = due_key.find('\0').map_or(0, |i| i + 1);
    format!("{}{due_ms:020}\0{}", &due_key[..prefix_end], id_of(due_key))
}

fn id_of(due_key: &str) -> &str {
    due_key.rsplit('\0').next().unwrap_or_default()
}

/// The invocation key (`<ns>/<fn>/<id>`) of a due key.
pub(super) fn key_of(due_key: &str) -> String {
    let function = due_key.split('\0').next().unwrap_or_default();
    format!("{function}/{}", id_of(due_key))
}

/// The invocation-table record of a newly accepted `invocation`: no
/// attempts made yet.
pub(super) fn encode_record(invocation: &Invocation) -> Result<Vec<u8>, QueueError> {
    let encoded = invocation.encode().map_err(|source| QueueError::Encode {
        key: invocation.key(),
        source,
    })?;
    let mut record = Vec::with_capacity(4 + encoded.len());
    record.extend_from_slice(&0u32.to_be_bytes());
    record.extend_from_slice(&encoded);
    Ok(record)
}

/// Reads the record stored under invocation key `key`: the attempts made
/// and the invocation.
pub(super) fn decode_record(key: &str, record: &[u8]) -> Result<(u32, Invocation), QueueError> {
    let attempts = record
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| QueueError::Truncated {
            record: "invocation",
            key: key.to_owned(),
            len: record.len(),
        })?;
    let invocation = Invocation::decode(&record[4..]).map_err(|source| QueueError::Decode {
        record: "invocation",
        key: key.to_owned(),
        source,
    })?;
    Ok((attempts, invocation))
}

/// The dead-table value of `invocation`, given up for `reason`.
pub(super) fn encode_dead(invocation: &Invocation, reason: &str) -> Result<Vec<u8>, QueueError> {
    let encoded = invocation.encode().map_err(|source| QueueError::Encode {
        key: invocation.key(),
        source,
    })?;
    let mut value = Vec::with_capacity(4 + reason.len() + encoded.len());
    value.extend_from_slice(&(reason.len() as u32).to_be_bytes());
    value.extend_from_slice(reason.as_bytes());
    value.extend_from_slice(&encoded);
    Ok(value)
}

/// Reads the dead letter of invocation key `key`: the reason and the
/// invocation.
pub(super) fn decode_dead(key: &str, value: &[u8]) -> Result<DeadLetter, QueueError> {
    let bad = || QueueError::Truncated {
        record: "dead letter",
        key: key.to_owned(),
        len: value.len(),
    };
    let len = value
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(bad)?;
    let reason = value.get(4..4 + len).ok_or_else(bad)?;
    let invocation =
        Invocation::decode(&value[4 + len..]).map_err(|source| QueueError::Decode {
            record: "dead letter",
            key: key.to_owned(),
            source,
        })?;
    Ok(DeadLetter {
        invocation,
        reason: String::from_utf8_lossy(reason).into_owned(),
    })
}
