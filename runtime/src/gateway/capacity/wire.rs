//! What gateways send each other on the admin port to move slots: an ask
//! names a revision and its replicas (never an address to connect to: the
//! lender only lowers its own limits on replicas it already serves), the
//! answer the slots handed over, per replica.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The path of a capacity ask on a gateway's admin port (control token
/// required).
pub const CAPACITY_PATH: &str = "/v1/capacity";

/// The most replicas one ask may name; a larger ask is refused (400).
pub const MAX_ASK_REPLICAS: usize = 256;

/// The most bytes of an ask or an answer read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One replica, as both gateways know it from the revision's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaRef {
    /// The endpoint's id (pod name).
    pub id: String,
    /// The endpoint's address.
    pub addr: SocketAddr,
}

/// A gateway with waiting requests asks a peer for free slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapacityAsk {
    /// The revision's namespace.
    pub namespace: String,
    /// Its Function.
    pub function: String,
    /// The revision.
    pub revision: String,
    /// Slots wanted, over all the replicas named.
    pub want: u32,
    /// The replicas the asker routes to, at most [`MAX_ASK_REPLICAS`].
    pub replicas: Vec<ReplicaRef>,
}

/// Slots handed over on one replica: the lender no longer has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaGrant {
    /// The replica.
    #[serde(flatten)]
    pub replica: ReplicaRef,
    /// Slots handed over.
    pub slots: u32,
}

/// The answer to a [`CapacityAsk`]. Unknown fields are ignored, so a
/// newer lender can say more to an older borrower.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityGrant {
    /// Per replica, the slots handed over (replicas with none are left out).
    pub grants: Vec<ReplicaGrant>,
    /// Busy slots the lender has released on the replicas named: free
    /// soon, and handed to the next ask, so the asker asks again soon.
    #[serde(default)]
    pub released: u32,
}
