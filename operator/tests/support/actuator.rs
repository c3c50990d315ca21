//! An in-memory `ScaleActuator`: records every write in order and answers
//! `replicas()` with the last replica count written (ready at once), so that
//! tests of the autoscaler loop see exactly what it asked for. Revisions
//! given an age (and a count) stand for ones scaled before the loop started.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flint_api::backend::{Replicas, RevisionKey, ScaleActuator, ScaleError, Standing};

/// The actuator; clones share the same record.
#[derive(Clone, Default)]
pub struct Memory {
    writes: Arc<Mutex<Vec<(RevisionKey, u32)>>>,
    replicas: Arc<Mutex<HashMap<RevisionKey, u32>>>,
    ages: Arc<Mutex<HashMap<RevisionKey, Duration>>>,
}

impl Memory {
    /// Every write so far, in order.
    pub fn writes(&self) -> Vec<(RevisionKey, u32)> {
        self.writes.lock().unwrap().clone()
    }

    /// Makes `key` a revision created `age` ago, standing at `replicas`.
    #[allow(dead_code)]
    pub fn existing(&self, key: &RevisionKey, age: Duration, replicas: u32) {
        self.ages.lock().unwrap().insert(key.clone(), age);
        self.replicas.lock().unwrap().insert(key.clone(), replicas);
    }

    /// The replica count last written for `key`; 0 if never written.
    pub fn replicas_of(&self, key: &RevisionKey) -> u32 {
        self.replicas.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

impl ScaleActuator for Memory {
    async fn scale(&self, revision: &RevisionKey, replicas: u32) -> Result<(), ScaleError> {
        self.writes
            .lock()
            .unwrap()
            .push((revision.clone(), replicas));
        self.replicas
            .lock()
            .unwrap()
            .insert(revision.clone(), replicas);
        Ok(())
    }

    async fn replicas(&self, revision: &RevisionKey) -> Result<Replicas, ScaleError> {
        let n = self.replicas_of(revision);
        Ok(Replicas {
            desired: n,
            ready: n,
        })
    }

    async fn standing(&self, revision: &RevisionKey) -> Result<Option<Standing>, ScaleError> {
        let age = self.ages.lock().unwrap().get(revision).copied();
        let n = self.replicas_of(revision);
        Ok(age.map(|age| Standing {
            age,
            replicas: Replicas {
                desired: n,
                ready: n,
            },
        }))
    }
}
