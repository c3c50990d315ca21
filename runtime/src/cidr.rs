//! Address blocks (`10.0.0.0/8`, `fd00::/8`, or a single address), read
//! from settings and matched against peer and resolved addresses. One type
//! for every list of blocks the runtime reads — the callbacks' address
//! policy ([`crate::events::address`]) and the gateway's trusted proxies
//! ([`crate::gateway::TrustedProxies`]) — so the two cannot come to parse
//! or match the same text differently.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address block: `10.0.0.0/8`, `fd00::/8`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a text is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an address block (e.g. 10.0.0.0/8, fd00::/8 or 192.0.2.7)")]
pub struct CidrError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub problem: CidrProblem,
}

/// What is wrong with a text that is not a [`Cidr`], for callers that
/// word the two cases differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidrProblem {
    /// The address, or the prefix length, is not a number of the right form.
    NotAnAddress,
    /// The prefix length is longer than the address.
    PrefixTooLong,
}

impl Cidr {
    /// The block of `addr` with `prefix` leading bits; `None` when the
    /// prefix is longer than the address.
    pub const fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let bits = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > bits {
            return None;
        }
        Some(Self { addr, prefix })
    }

    /// The IPv4 block `a.b.c.d/prefix`, for tables of constants (the
    /// prefix is not checked: the caller writes it).
    pub(crate) const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Self {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    /// The IPv6 block of `segments` and `prefix`, for tables of constants.
    pub(crate) const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Self {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    /// The block's first address, as written.
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The number of leading bits an address must share with [`Cidr::addr`].
    pub const fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in the block. An IPv4 block holds no IPv6 address
    /// and the other way round: callers that judge IPv4-mapped addresses
    /// as IPv4 map them first.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        (a[full] & mask) == (b[full] & mask)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Reads `addr/prefix`, or a bare address (the block of that address
    /// alone); spaces around the text are ignored.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |problem| CidrError {
            text: text.to_owned(),
            problem,
        };
        let trimmed = text.trim();
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((addr, prefix)) => {
                let addr: IpAddr = addr.parse().map_err(|_| bad(CidrProblem::NotAnAddress))?;
                let prefix = prefix
                    .parse::<u8>()
                    .map_err(|_| bad(CidrProblem::NotAnAddress))?;
                (addr, prefix)
            }
            None => {
                let addr: IpAddr = trimmed
                    .parse()
                    .map_err(|_| bad(CidrProblem::NotAnAddress))?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        Self::new(addr, prefix).ok_or_else(|| bad(CidrProblem::PrefixTooLong))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_contain() {
        for (text, inside, outside) in [
            ("10.0.0.0/8", "10.255.255.255", "11.0.0.0"),
            ("172.16.0.0/12", "172.31.0.1", "172.32.0.1"),
            ("192.0.2.7", "192.0.2.7", "192.0.2.8"),
            ("0.0.0.0/0", "8.8.8.8", "::1"),
            ("fe80::/10", "febf::1", "fec0::1"),
            ("::1", "::1", "::2"),
            (" 100.64.0.0/10 ", "100.127.0.1", "100.128.0.1"),
        ] {
            let block = cidr(text);
            assert!(block.contains(ip(inside)), "{text} holds {inside}");
            assert!(!block.contains(ip(outside)), "{text} lacks {outside}");
        }
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_tell_a_long_prefix_from_a_bad_address() {
        let problem = |text: &str| text.parse::<Cidr>().unwrap_err().problem;
        assert_eq!(problem("10.0.0.0/33"), CidrProblem::PrefixTooLong);
        assert_eq!(problem("::/129"), CidrProblem::PrefixTooLong);
        assert_eq!(problem("10.0.0.0/x"), CidrProblem::NotAnAddress);
        assert_eq!(problem("10.0.0.0/300"), CidrProblem::NotAnAddress);
        assert_eq!(problem("nope"), CidrProblem::NotAnAddress);
        let block = cidr("::ffff:10.0.0.0/104");
        assert_eq!((block.addr(), block.prefix()), (ip("::ffff:10.0.0.0"), 104));
    }
}
