//! Opening the embedded store: its directory and file, the tables created
//! when missing, settled ids past the dedupe window forgotten, invocations
//! stored by an earlier version re-keyed, and the index of pending
//! invocations rebuilt from what is stored.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableTable};

use super::layout::decode_record;
use super::pending::Pending;
use super::writer::{DEAD, DUE, INVOCATIONS, SETTLED, TICKS, Writer};
use super::{EmbeddedQueue, Inner};
use crate::events::invocation::now_ms;
use crate::events::queue::{DEDUPE_WINDOW, QueueError};

/// The error of preparing the store after opening it.
fn prepare_err(err: impl Into<redb::Error>) -> QueueError {
    QueueError::StorePrepare(err.into())
}

impl EmbeddedQueue {
    /// Opens (or creates) the store in `dir` (file `events.redb`).
    pub fn open(dir: &Path) -> Result<Self, QueueError> {
        std::fs::create_dir_all(dir).map_err(|source| QueueError::StoreDir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = dir.join("events.redb");
        let db =
            Database::create(&path).map_err(|source| QueueError::StoreOpen { path, source })?;
        let db = Arc::new(db);
        let pending = Self::prepare(&db)?;
        let writer = Writer::start(Arc::clone(&db)).map_err(QueueError::StoreWriter)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                writer,
                pending: Mutex::new(pending),
                leased: Mutex::new(HashMap::new()),
                wake: Mutex::new(HashMap::new()),
                arrivals: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// Creates the tables, forgets settled ids past the dedupe window,
    /// re-keys invocations stored by a version that keyed them by id alone,
    /// and reads what is pending.
    fn prepare(db: &Database) -> Result<Pending, QueueError> {
        let cutoff = now_ms().saturating_sub(DEDUPE_WINDOW.as_millis() as u64);
        let txn = db.begin_write().map_err(prepare_err)?;
        let mut pending = Pending::default();
        {
            let mut invocations = txn.open_table(INVOCATIONS).map_err(prepare_err)?;
            txn.open_table(DUE).map_err(prepare_err)?;
            txn.open_table(DEAD).map_err(prepare_err)?;
            txn.open_table(TICKS).map_err(prepare_err)?;
            let mut settled = txn.open_table(SETTLED).map_err(prepare_err)?;
            // Settled ids without a Function in their key cannot match any
            // more: they go too.
            settled
                .retain(|key, at| at >= cutoff && key.contains('/'))
                .map_err(prepare_err)?;
            let mut old_keys = Vec::new();
            for entry in invocations.iter().map_err(prepare_err)? {
                let (key, record) = entry.map_err(prepare_err)?;
                let key = key.value().to_owned();
                let inv = decode_record(&key, record.value())?.1;
                if key.contains('/') {
                    pending.add(inv.target, inv.enqueued_at_ms, key);
                } else {
                    old_keys.push((key, inv.key(), record.value().to_vec()));
                    pending.add(inv.target.clone(), inv.enqueued_at_ms, inv.key());
                }
            }
            for (old, new, record) in old_keys {
                invocations.remove(old.as_str()).map_err(prepare_err)?;
                invocations
                    .insert(new.as_str(), record.as_slice())
                    .map_err(prepare_err)?;
            }
        }
        txn.commit().map_err(prepare_err)?;
        Ok(pending)
    }
}
