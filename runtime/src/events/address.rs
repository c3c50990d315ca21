//! Which addresses a result callback may reach. `X-Callback-Url` is chosen
//! by whoever sends the request, and the gateway POSTs to it from inside
//! the cluster: without a policy, a caller could make the gateway reach
//! its own loopback, the cloud's metadata service (link-local), private
//! networks and the cluster's Services — the operator's poke endpoint
//! among them. [`AddressPolicy::check`] is the pure decision on one
//! resolved address; the intake applies it to every address a callback
//! host resolves to, and the callbacks' connector
//! ([`super::callback`]) to every address it connects to, so a name that
//! resolves differently the second time (DNS rebinding) gains nothing.

use std::net::{IpAddr, Ipv4Addr};

pub use crate::cidr::{Cidr, CidrError};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 127.0.0.0/8, ::1: the gateway itself.
    Loopback,
    /// 0.0.0.0/8, ::: "this host" (connecting to it reaches loopback).
    Unspecified,
    /// 169.254.0.0/16, fe80::/10: where cloud metadata services live.
    LinkLocal,
    /// 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7, fec0::/10.
    Private,
    /// 100.64.0.0/10, carrier-grade NAT (often used for pods and nodes).
    SharedAddressSpace,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
    Documentation,
    /// 192.0.0.0/24, 198.18.0.0/15, 240.0.0.0/4, 100::/64: not routable
    /// on the Internet.
    Reserved,
    /// In one of the cluster's configured pod or Service ranges.
    Cluster(Cidr),
}

impl Refusal {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Unspecified => "unspecified",
            Self::LinkLocal => "link_local",
            Self::Private => "private",
            Self::SharedAddressSpace => "shared",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Reserved => "reserved",
            Self::Cluster(_) => "cluster",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Loopback => f.write_str("a loopback address"),
            Self::Unspecified => f.write_str("an unspecified address"),
            Self::LinkLocal => f.write_str("a link-local address (cloud metadata lives there)"),
            Self::Private => f.write_str("a private address"),
            Self::SharedAddressSpace => f.write_str("a shared (carrier-grade NAT) address"),
            Self::Multicast => f.write_str("a multicast address"),
            Self::Broadcast => f.write_str("the broadcast address"),
            Self::Documentation => f.write_str("a documentation address"),
            Self::Reserved => f.write_str("a reserved address"),
            Self::Cluster(cidr) => write!(f, "in the cluster range {cidr}"),
        }
    }
}

const LOOPBACK_V4: Cidr = Cidr::v4(127, 0, 0, 0, 8);
const LOOPBACK_V6: Cidr = Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128);

/// Blocks refused whatever the cluster.
const REFUSED: [(Cidr, Refusal); 23] = [
    (LOOPBACK_V4, Refusal::Loopback),
    (Cidr::v4(0, 0, 0, 0, 8), Refusal::Unspecified),
    (Cidr::v4(169, 254, 0, 0, 16), Refusal::LinkLocal),
    (Cidr::v4(10, 0, 0, 0, 8), Refusal::Private),
    (Cidr::v4(172, 16, 0, 0, 12), Refusal::Private),
    (Cidr::v4(192, 168, 0, 0, 16), Refusal::Private),
    (Cidr::v4(100, 64, 0, 0, 10), Refusal::SharedAddressSpace),
    (Cidr::v4(255, 255, 255, 255, 32), Refusal::Broadcast),
    (Cidr::v4(224, 0, 0, 0, 4), Refusal::Multicast),
    (Cidr::v4(192, 0, 2, 0, 24), Refusal::Documentation),
    (Cidr::v4(198, 51, 100, 0, 24), Refusal::Documentation),
    (Cidr::v4(203, 0, 113, 0, 24), Refusal::Documentation),
    (Cidr::v4(192, 0, 0, 0, 24), Refusal::Reserved),
    (Cidr::v4(198, 18, 0, 0, 15), Refusal::Reserved),
    (Cidr::v4(240, 0, 0, 0, 4), Refusal::Reserved),
    (LOOPBACK_V6, Refusal::Loopback),
    (
        Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        Refusal::Unspecified,
    ),
    (
        Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        Refusal::LinkLocal,
    ),
    (Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), Refusal::Private),
    (
        Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        Refusal::Private,
    ),
    (
        Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        Refusal::Multicast,
    ),
    (
        Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        Refusal::Documentation,
    ),
    (
        Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        Refusal::Reserved,
    ),
];

/// The IPv4 address an IPv6 address stands for, when it embeds one that
/// the network would deliver to: IPv4-mapped (`::ffff:a.b.c.d`, which the
/// kernel connects to over IPv4), IPv4-compatible (`::a.b.c.d`,
/// deprecated; `::` and `::1` excluded) and the NAT64 prefixes
/// (`64:ff9b::/96`, `64:ff9b:1::/48`, translated to IPv4 by a NAT64
/// gateway). Any other address is returned as it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6] == [0; 6] && u32::from(low) > 1;
    let nat64 =
        s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1);
    if compatible || nat64 {
        IpAddr::V4(low)
    } else {
        ip
    }
}

/// The callback address policy: every block in [`REFUSED`] and the
/// cluster's own ranges are refused, unless an allow-listed block holds
/// the address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<Cidr>,
    cluster: Vec<Cidr>,
}

impl AddressPolicy {
    /// A policy that also refuses the `cluster` ranges (pod and Service
    /// CIDRs, when they are not private already) and lets through what
    /// `allow` holds, whatever else it is.
    pub fn new(allow: Vec<Cidr>, cluster: Vec<Cidr>) -> Self {
        Self { allow, cluster }
    }

    /// The policy of a gateway that listens on loopback only (`flint dev`
    /// on 127.0.0.1): its callers are on this machine and can reach its
    /// loopback anyway, so loopback callbacks are allowed. Any other
    /// listen address gets the default policy.
    pub fn for_local_gateway(listen: IpAddr) -> Self {
        if listen.is_loopback() {
            Self::new(loopback(), Vec::new())
        } else {
            Self::default()
        }
    }

    /// The allow-listed blocks, comma-separated (`none` without any), for logs.
    pub fn describe_allowed(&self) -> String {
        describe(&self.allow)
    }

    /// The configured cluster ranges, comma-separated, for logs.
    pub fn describe_cluster(&self) -> String {
        describe(&self.cluster)
    }

    /// Whether a callback may connect to `ip`, and if not, why. IPv6 forms
    /// of IPv4 addresses are judged as the IPv4 address they reach.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let reached = canonical(ip);
        if self
            .allow
            .iter()
            .any(|c| c.contains(ip) || c.contains(reached))
        {
            return Ok(());
        }
        if let Some((_, refusal)) = REFUSED.iter().find(|(c, _)| c.contains(reached)) {
            return Err(*refusal);
        }
        match self.cluster.iter().find(|c| c.contains(reached)) {
            Some(cidr) => Err(Refusal::Cluster(*cidr)),
            None => Ok(()),
        }
    }
}

fn describe(blocks: &[Cidr]) -> String {
    if blocks.is_empty() {
        return "none".to_owned();
    }
    let texts: Vec<String> = blocks.iter().map(Cidr::to_string).collect();
    texts.join(",")
}

/// Both loopback blocks, `127.0.0.0/8` and `::1/128`.
pub fn loopback() -> Vec<Cidr> {
    vec![LOOPBACK_V4, LOOPBACK_V6]
}

#[cfg(test)]
#[path = "address_tests.rs"]
mod tests;
