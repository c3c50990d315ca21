use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

#[test]
fn the_policy_on_resolved_addresses() {
    let policy = AddressPolicy::new(
        vec![cidr("10.1.2.0/24"), cidr("fd12:3456::/32")],
        vec![cidr("30.96.0.0/12"), cidr("2600:1f00::/24")],
    );
    use Refusal::*;
    let cluster_v4 = Cluster(cidr("30.96.0.0/12"));
    let cluster_v6 = Cluster(cidr("2600:1f00::/24"));
    // (address, expected)
    let cases: &[(&str, Result<(), Refusal>)] = &[
        // Loopback, every form.
        ("127.0.0.1", Err(Loopback)),
        ("127.255.0.9", Err(Loopback)),
        ("::1", Err(Loopback)),
        ("::ffff:127.0.0.1", Err(Loopback)),
        ("::127.0.0.1", Err(Loopback)),
        ("64:ff9b::7f00:1", Err(Loopback)),
        // Unspecified ("this host").
        ("0.0.0.0", Err(Unspecified)),
        ("0.1.2.3", Err(Unspecified)),
        ("::", Err(Unspecified)),
        ("::ffff:0.0.0.0", Err(Unspecified)),
        // Link-local: cloud metadata.
        ("169.254.169.254", Err(LinkLocal)),
        ("::ffff:169.254.169.254", Err(LinkLocal)),
        ("::ffff:a9fe:a9fe", Err(LinkLocal)),
        ("64:ff9b::169.254.169.254", Err(LinkLocal)),
        ("64:ff9b:1::a9fe:a9fe", Err(LinkLocal)),
        ("fe80::1", Err(LinkLocal)),
        ("febf::1", Err(LinkLocal)),
        // Private.
        ("10.0.0.1", Err(Private)),
        ("172.16.0.1", Err(Private)),
        ("172.31.255.255", Err(Private)),
        ("192.168.1.1", Err(Private)),
        ("::ffff:10.0.0.1", Err(Private)),
        ("::ffff:192.168.0.1", Err(Private)),
        ("fc00::1", Err(Private)),
        ("fd00::1", Err(Private)),
        ("fec0::1", Err(Private)),
        ("100.64.0.1", Err(SharedAddressSpace)),
        ("100.127.255.254", Err(SharedAddressSpace)),
        // Multicast, broadcast, documentation, reserved.
        ("224.0.0.1", Err(Multicast)),
        ("239.255.255.250", Err(Multicast)),
        ("ff02::1", Err(Multicast)),
        ("::ffff:224.0.0.251", Err(Multicast)),
        ("255.255.255.255", Err(Broadcast)),
        ("192.0.2.7", Err(Documentation)),
        ("198.51.100.7", Err(Documentation)),
        ("203.0.113.7", Err(Documentation)),
        ("2001:db8::7", Err(Documentation)),
        ("192.0.0.8", Err(Reserved)),
        ("198.18.0.1", Err(Reserved)),
        ("240.0.0.1", Err(Reserved)),
        ("100::1", Err(Reserved)),
        // The cluster's ranges, configured, in every form.
        ("30.100.0.10", Err(cluster_v4)),
        ("::ffff:30.100.0.10", Err(cluster_v4)),
        ("2600:1f00::5", Err(cluster_v6)),
        // Allow-listed blocks pass, also in their IPv6 forms; nothing else
        // of the same range does.
        ("10.1.2.3", Ok(())),
        ("::ffff:10.1.2.3", Ok(())),
        ("10.1.3.3", Err(Private)),
        ("fd12:3456::1", Ok(())),
        ("fd12:3457::1", Err(Private)),
        // Public addresses.
        ("8.8.8.8", Ok(())),
        ("172.32.0.1", Ok(())),
        ("100.128.0.1", Ok(())),
        ("169.255.0.1", Ok(())),
        ("::ffff:8.8.8.8", Ok(())),
        ("64:ff9b::808:808", Ok(())),
        ("2606:4700::1111", Ok(())),
        ("31.0.0.1", Ok(())),
    ];
    for (addr, want) in cases {
        assert_eq!(policy.check(ip(addr)), *want, "{addr}");
    }
    // Without an allow-list, the allow-listed ones are what they are.
    let strict = AddressPolicy::default();
    assert_eq!(strict.check(ip("10.1.2.3")), Err(Private));
    assert_eq!(strict.check(ip("30.100.0.10")), Ok(()), "no cluster range");
}

#[test]
fn loopback_can_be_allow_listed() {
    let policy = AddressPolicy::new(loopback(), Vec::new());
    for addr in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "127.1.2.3"] {
        assert_eq!(policy.check(ip(addr)), Ok(()), "{addr}");
    }
    assert_eq!(policy.check(ip("169.254.169.254")), Err(Refusal::LinkLocal));
    let local = AddressPolicy::for_local_gateway(ip("127.0.0.1"));
    assert_eq!(local.check(ip("::1")), Ok(()));
    assert_eq!(local.check(ip("10.0.0.1")), Err(Refusal::Private));
    let exposed = AddressPolicy::for_local_gateway(ip("0.0.0.0"));
    assert_eq!(exposed.check(ip("127.0.0.1")), Err(Refusal::Loopback));
}
