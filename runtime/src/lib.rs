//! Flint's data plane: the gateway (router, traffic split, activator at zero,
//! load balancer, proxy, metrics) and the local process backend behind
//! `flint dev`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod budget;
pub mod cidr;
pub mod events;
pub mod gateway;
pub mod local;
pub mod metrics;
pub mod shard;
