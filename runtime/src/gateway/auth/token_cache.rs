//! Tokens that verified, remembered with the identity they proved: a
//! client presents the same token on request after request, and checking
//! its signature again each time (20–60 µs in ring) would cost more than
//! the rest of the proxying. Only successes are remembered; a failure is
//! answered in full every time, so a forged or broken token changes
//! nothing here.
//!
//! An entry answers only while the token is within its `exp` and `nbf`
//! (with no clock skew: a token that verified thanks to the skew is
//! verified again), for [`MAX_AGE`] at most, and while the key set it
//! verified against is still the one in use (a new key set makes every
//! entry of the old one a miss, verified again against the new one).
//!
//! Entries are found by a keyed hash of the whole token (SipHash with
//! random keys per process, std's `RandomState`: nobody can make two
//! tokens collide on purpose), then the whole stored token is compared
//! with the presented one.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::identity::Identity;
use super::jwt::MAX_TOKEN_BYTES;

/// How many tokens one rule remembers by default.
pub(super) const DEFAULT_CAPACITY: usize = 10_000;
/// The longest an entry answers without the token being verified again.
pub(super) const MAX_AGE: Duration = Duration::from_secs(60);
/// Locks per cache: concurrent requests with different tokens rarely meet.
const SHARDS: usize = 16;

/// What a token verified against, and when it is valid: what a later
/// presentation of it must still match.
#[derive(Debug, Clone, Copy)]
pub(super) struct Verified {
    /// The generation of the key set that held its key (`KeySet`'s);
    /// `None` for an HMAC token (the rule's HMAC key never changes: a new
    /// key makes a new rule, with a new cache).
    pub(super) key_set: Option<u64>,
    /// Its `exp`, in seconds since the epoch.
    pub(super) exp: u64,
    /// Its `nbf`, in seconds since the epoch (0 without one).
    pub(super) nbf: u64,
}

/// One remembered token.
struct Entry {
    token: Box<str>,
    identity: Identity,
    key_set: Option<u64>,
    /// It answers from `from` (inclusive) until `until` (exclusive), since
    /// the epoch: within `nbf`..`exp` and at most [`MAX_AGE`] after it was
    /// remembered.
    from: Duration,
    until: Duration,
}

/// One lock's share of the entries.
#[derive(Default)]
struct Shard {
    entries: HashMap<u64, Entry, BuildHasherDefault<Prehashed>>,
    /// The keys of `entries`, each once, oldest first: who goes when the
    /// shard is full.
    order: VecDeque<u64>,
}

/// A rule's verified tokens. At most `capacity` entries (rounded down to
/// a multiple of 16, at least 16), each a token of at most
/// [`MAX_TOKEN_BYTES`] and its identity (`sub` and each forwarded claim at
/// most 1 KiB, plus the claim's header name), plus about 150 bytes of
/// bookkeeping: memory stays below `capacity` × (token + identity + 150)
/// bytes, about 165 MB for 10,000 tokens of 16 KiB forwarding no claim,
/// 20 MB for tokens of 1.5 KiB. Only tokens the issuer signed get in, and
/// entries older than [`MAX_AGE`] leave as new ones come.
pub(super) struct TokenCache {
    hasher: RandomState,
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

impl TokenCache {
    /// An empty cache holding at most `capacity` tokens.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            per_shard: (capacity / SHARDS).max(1),
        }
    }

    /// The key of `token`: its keyed hash.
    pub(super) fn key(&self, token: &str) -> u64 {
        self.hasher.hash_one(token)
    }

    fn shard(&self, key: u64) -> &RwLock<Shard> {
        // The middle bits: the map uses the low and the top ones.
        &self.shards[(key >> 32) as usize % SHARDS]
    }

    /// The identity `token` (whose key is `key`) proved, if it verified,
    /// is valid at `now` and verified against the key set of generation
    /// `current` (or with the HMAC key). Takes a shared lock: readers do
    /// not wait for each other.
    pub(super) fn get(
        &self,
        key: u64,
        token: &str,
        now: Duration,
        current: Option<u64>,
    ) -> Option<Identity> {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = shard.entries.get(&key)?;
        let valid = entry.from <= now
            && now < entry.until
            && entry.key_set.is_none_or(|g| Some(g) == current);
        // A plain comparison, not a constant-time one: it only runs once
        // the secret-keyed hashes matched, that is for the same token (or
        // by a 2⁻⁶⁴ accident nobody can steer), so its timing tells an
        // attacker nothing about a stored token they do not already hold.
        (valid && *entry.token == *token).then(|| entry.identity.clone())
    }

    /// Remembers that `token` (whose key is `key`) verified at `now` as
    /// `identity`. A token not valid at `now` without clock skew is not
    /// remembered. When the shard is full, its oldest entry goes;
    /// entries past their time at the front go too.
    pub(super) fn insert(
        &self,
        key: u64,
        token: &str,
        identity: &Identity,
        verified: Verified,
        now: Duration,
    ) {
        let from = now.max(Duration::from_secs(verified.nbf));
        let until = (now + MAX_AGE).min(Duration::from_secs(verified.exp));
        if token.len() > MAX_TOKEN_BYTES || from > now || until <= now {
            return;
        }
        let entry = Entry {
            token: token.into(),
            identity: identity.clone(),
            key_set: verified.key_set,
            from,
            until,
        };
        let mut shard = self
            .shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Shard { entries, order } = &mut *shard;
        if let Some(slot) = entries.get_mut(&key) {
            *slot = entry;
            return;
        }
        while let Some(&oldest) = order.front() {
            let stale = entries.get(&oldest).is_none_or(|e| e.until <= now);
            if !stale && entries.len() < self.per_shard {
                break;
            }
            order.pop_front();
            entries.remove(&oldest);
        }
        entries.insert(key, entry);
        order.push_back(key);
    }

    /// How many tokens are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }
}

/// Now, as the time since the epoch the cache compares with; `None` if the
/// clock is before the epoch (the cache is then not used).
pub(super) fn now() -> Option<Duration> {
    SystemTime::now().duration_since(UNIX_EPOCH).ok()
}

/// The identity hasher for keys that are already keyed hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; this keeps any other input working.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}
