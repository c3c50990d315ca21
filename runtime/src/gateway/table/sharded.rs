//! A copy-on-write map by string key, split into a fixed number of shards
//! so that a writer changing one key copies one shard, not the map.
//!
//! Why not one map, or a persistent map: the routing table is read on
//! every request and changed when a Function changes. Cloning a snapshot
//! costs [`SHARDS`] reference-count increments (no entry is copied), and a
//! change copies only the shard it touches: with 10,000 Functions about
//! 40 entries, a few microseconds. A lookup is one cheap hash to pick the
//! shard and one ordinary `HashMap` lookup, so reading stays as fast as
//! the whole-map table it replaces (a persistent trie would chase a
//! pointer per level instead).

use std::collections::HashMap;
use std::sync::Arc;

/// Number of shards: a power of two, so the shard is a mask of the hash.
/// 256 keeps each shard to ~40 entries at 10,000 Functions while an empty
/// table costs a few KiB.
pub(crate) const SHARDS: usize = 256;

type Shard<V> = HashMap<Box<str>, V>;

/// A map from `Box<str>` to `V` whose clones share their shards until one
/// of them changes a shard.
pub(crate) struct Sharded<V> {
    shards: Vec<Arc<Shard<V>>>,
}

impl<V> Clone for Sharded<V> {
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
        }
    }
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect(),
        }
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for Sharded<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// FNV-1a over the key's bytes: picks the shard (the shard's own map
/// hashes the key again with its DoS-resistant hasher).
fn shard_of(key: &str) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    // Fold the high bits in: FNV's low bits mix least.
    ((hash ^ (hash >> 16)) as usize) & (SHARDS - 1)
}

impl<V> Sharded<V> {
    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.shards.get(shard_of(key))?.get(key)
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (&**k, v)))
    }

    /// Every value, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|s| s.values())
    }

    /// Whether `self` and `other` share the shard of `key` (neither
    /// changed it since one was cloned from the other).
    #[cfg(test)]
    pub(crate) fn shares_shard(&self, other: &Self, key: &str) -> bool {
        let i = shard_of(key);
        match (self.shards.get(i), other.shards.get(i)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl<V: Clone> Sharded<V> {
    /// The shard of `key`, copied first if another snapshot shares it.
    fn shard_mut(&mut self, key: &str) -> Option<&mut Shard<V>> {
        self.shards.get_mut(shard_of(key)).map(Arc::make_mut)
    }

    /// The value of `key`, to change in place (its shard copied first if
    /// shared).
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let shard = self.shard_mut(key)?;
        shard.get_mut(key)
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub(crate) fn insert(&mut self, key: Box<str>, value: V) -> Option<V> {
        self.shard_mut(&key)?.insert(key, value)
    }

    /// Removes `key`; returns its value. A shard without the key is not
    /// copied.
    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let i = shard_of(key);
        if !self.shards.get(i)?.contains_key(key) {
            return None;
        }
        self.shard_mut(key)?.remove(key)
    }

    /// The value of `key`, inserted as `V::default()` when absent.
    pub(crate) fn entry_or_default(&mut self, key: &str) -> Option<&mut V>
    where
        V: Default,
    {
        let shard = self.shard_mut(key)?;
        if !shard.contains_key(key) {
            shard.insert(key.into(), V::default());
        }
        shard.get_mut(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_copies_only_its_shard() {
        let mut a: Sharded<u32> = Sharded::default();
        for i in 0..1000 {
            a.insert(format!("k{i}").into(), i);
        }
        let mut b = a.clone();
        b.insert("k7".into(), 70);
        assert_eq!(a.get("k7"), Some(&7));
        assert_eq!(b.get("k7"), Some(&70));
        assert!(!a.shares_shard(&b, "k7"));
        let shared = (0..1000)
            .filter(|i| a.shares_shard(&b, &format!("k{i}")))
            .count();
        assert!(shared > 900, "{shared} keys still shared");
        assert_eq!(b.remove("k7"), Some(70));
        assert_eq!(b.remove("absent"), None);
        assert_eq!(b.iter().count(), 999);
        *b.entry_or_default("new").unwrap() += 1;
        assert_eq!(b.get("new"), Some(&1));
        *b.get_mut("k1").unwrap() = 11;
        assert_eq!((a.get("k1"), b.get("k1")), (Some(&1), Some(&11)));
    }
}
