//! Reading an asynchronous request's body whole, within the intake's size
//! limit and the gateway's memory budget: the bytes are charged before
//! they are held (the declared length up front, otherwise each time the
//! buffer grows), so a flood of bodies is refused before it fills the
//! gateway's memory, not after.

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::budget::{Charge, OverBudget};

/// The buffer of a body of unknown length starts at this size and doubles.
const FIRST_CHUNK: usize = 16 * 1024;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is longer than the limit.
    #[error("async request bodies are limited to {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The client's body failed (reset, stalled).
    #[error("reading the request body failed: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The memory budget has no room for it.
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
}

/// Reads `body` (at most `limit` bytes) into one buffer, growing `charge`
/// by the buffer's size before each allocation. On failure nothing is
/// kept but what `charge` already held.
pub async fn read<B>(body: B, limit: usize, charge: &mut Charge) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = body.size_hint().exact();
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut buf = Vec::new();
    if let Some(n) = declared {
        // Content-Length: one buffer of the right size, charged before a
        // byte is read.
        let n = usize::try_from(n).unwrap_or(limit);
        charge.grow(n)?;
        buf.reserve_exact(n);
    }
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: not stored
        };
        let needed = buf.len() + data.len();
        if needed > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if needed > buf.capacity() {
            let grown = needed.max(buf.capacity().saturating_mul(2).max(FIRST_CHUNK).min(limit));
            charge.grow(grown - buf.capacity())?;
            buf.reserve_exact(grown - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{MemoryBudget, Use};
    use http_body_util::{Full, StreamBody};

    fn chunked(chunks: Vec<Vec<u8>>) -> impl http_body::Body<Data = Bytes, Error = std::io::Error> {
        StreamBody::new(futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok(http_body::Frame::data(Bytes::from(c)))),
        ))
    }

    #[tokio::test]
    async fn a_declared_length_is_charged_before_reading() {
        let budget = MemoryBudget::new(1000);
        let mut charge = budget.charge(Use::AsyncBody, 100).unwrap();
        let body = read(Full::new(Bytes::from(vec![1u8; 800])), 1000, &mut charge)
            .await
            .unwrap();
        assert_eq!((body.len(), charge.bytes()), (800, 900));
        drop(charge);
        let mut charge = budget.charge(Use::AsyncBody, 300).unwrap();
        let err = read(Full::new(Bytes::from(vec![1u8; 800])), 1000, &mut charge)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::OverBudget(_)), "{err}");
        assert_eq!((charge.bytes(), budget.held()), (300, 300));
        let err = read(Full::new(Bytes::from(vec![1u8; 1001])), 1000, &mut charge)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 1000 }), "{err}");
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_is_charged_as_its_buffer_grows() {
        let budget = MemoryBudget::new(1 << 20);
        let mut charge = budget.charge(Use::AsyncBody, 0).unwrap();
        let chunks = vec![vec![7u8; 10_000]; 10];
        let body = read(chunked(chunks.clone()), 512 * 1024, &mut charge)
            .await
            .unwrap();
        assert_eq!(body.len(), 100_000);
        assert!(body.iter().all(|b| *b == 7));
        // Doubling from 16 KiB: 16, 32, 64, 128 KiB.
        assert_eq!(charge.bytes(), 128 * 1024);
        // Refused once the buffer cannot grow, and past the limit.
        let small = MemoryBudget::new(40 * 1024);
        let mut charge = small.charge(Use::AsyncBody, 0).unwrap();
        let err = read(chunked(chunks.clone()), 512 * 1024, &mut charge)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::OverBudget(_)), "{err}");
        assert!(small.held() <= 40 * 1024);
        let mut charge = budget.charge(Use::AsyncBody, 0).unwrap();
        let err = read(chunked(chunks), 50_000, &mut charge)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { .. }), "{err}");
    }
}
