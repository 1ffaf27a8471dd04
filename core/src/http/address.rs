//! Which IP addresses an adapter may reach. Everything that is not a public unicast address
//! is refused unless the policy grants its range explicitly: loopback, private, shared (CGNAT),
//! link-local (which holds 169.254.169.254), unique-local, multicast, unspecified,
//! broadcast, documentation and benchmark ranges, NAT64 (well-known and local-use), the
//! IETF protocol assignments (2001::/23, Teredo among them), SRv6 SIDs, and the cloud
//! metadata addresses: every block the IANA special-purpose registries mark as not
//! globally reachable (`fuzz/fuzz_targets/url_allowlist.rs` checks against that list).
//! IPv4-mapped and IPv4-compatible IPv6 addresses are judged by the IPv4 address inside, so
//! `[::ffff:127.0.0.1]` is loopback. Odd IPv4 spellings (decimal `2130706433`, octal
//! `0177.0.0.1`, hex `0x7f.1`, short `127.1`) never reach this module as text: the URL
//! parser (WHATWG rules) has already normalised them to an address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restricted {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16.
    Private,
    /// 100.64.0.0/10 (carrier-grade NAT).
    Shared,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// A cloud instance-metadata address (169.254.169.254, fd00:ec2::254, 100.100.100.200).
    CloudMetadata,
    /// fc00::/7.
    UniqueLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// Documentation, benchmarking, translation and reserved ranges (192.0.2/24, 198.18/15,
    /// 240/4, 2001:db8::/32, 64:ff9b::/96, 2001::/23, …).
    Reserved,
}

impl Restricted {
    /// How a message names it.
    pub fn describe(self) -> &'static str {
        match self {
            Restricted::Loopback => "a loopback address",
            Restricted::Private => "a private address",
            Restricted::Shared => "a shared (carrier-grade NAT) address",
            Restricted::LinkLocal => "a link-local address",
            Restricted::CloudMetadata => "a cloud metadata address",
            Restricted::UniqueLocal => "a unique-local address",
            Restricted::Multicast => "a multicast address",
            Restricted::Unspecified => "an unspecified address",
            Restricted::Broadcast => "the broadcast address",
            Restricted::Reserved => "a reserved address",
        }
    }
}

/// The address to judge: IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`)
/// IPv6 addresses stand for their IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                // ::a.b.c.d (deprecated IPv4-compatible), but not :: or ::1.
                if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
                    IpAddr::V4(Ipv4Addr::new(
                        (s[6] >> 8) as u8,
                        s[6] as u8,
                        (s[7] >> 8) as u8,
                        s[7] as u8,
                    ))
                } else {
                    IpAddr::V6(v6)
                }
            }
        },
        v4 => v4,
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

/// `None` for a public unicast address; otherwise why it is restricted.
pub fn restriction(ip: IpAddr) -> Option<Restricted> {
    match canonical(ip) {
        IpAddr::V4(v4) => restriction_v4(v4),
        IpAddr::V6(v6) => restriction_v6(v6),
    }
}

fn restriction_v4(ip: Ipv4Addr) -> Option<Restricted> {
    let table: [([u8; 4], u8, Restricted); 16] = [
        ([169, 254, 169, 254], 32, Restricted::CloudMetadata),
        ([100, 100, 100, 200], 32, Restricted::CloudMetadata),
        ([0, 0, 0, 0], 8, Restricted::Unspecified),
        ([127, 0, 0, 0], 8, Restricted::Loopback),
        ([10, 0, 0, 0], 8, Restricted::Private),
        ([172, 16, 0, 0], 12, Restricted::Private),
        ([192, 168, 0, 0], 16, Restricted::Private),
        ([100, 64, 0, 0], 10, Restricted::Shared),
        ([169, 254, 0, 0], 16, Restricted::LinkLocal),
        ([224, 0, 0, 0], 4, Restricted::Multicast),
        ([255, 255, 255, 255], 32, Restricted::Broadcast),
        ([240, 0, 0, 0], 4, Restricted::Reserved),
        ([192, 0, 0, 0], 24, Restricted::Reserved),
        ([192, 0, 2, 0], 24, Restricted::Reserved),
        ([198, 18, 0, 0], 15, Restricted::Reserved),
        ([198, 51, 100, 0], 24, Restricted::Reserved),
    ];
    if in_v4(ip, [203, 0, 113, 0], 24) {
        return Some(Restricted::Reserved);
    }
    table
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn restriction_v6(ip: Ipv6Addr) -> Option<Restricted> {
    let v6 = |s: &str| s.parse::<Ipv6Addr>().expect("valid constant");
    let table: [(Ipv6Addr, u8, Restricted); 13] = [
        (v6("fd00:ec2::254"), 128, Restricted::CloudMetadata),
        (Ipv6Addr::UNSPECIFIED, 128, Restricted::Unspecified),
        (Ipv6Addr::LOCALHOST, 128, Restricted::Loopback),
        (v6("fe80::"), 10, Restricted::LinkLocal),
        (v6("fc00::"), 7, Restricted::UniqueLocal),
        (v6("ff00::"), 8, Restricted::Multicast),
        (v6("2001:db8::"), 32, Restricted::Reserved),
        (v6("100::"), 64, Restricted::Reserved),
        // NAT64 (64:ff9b::/96) can reach any IPv4 address, private ones included; so can
        // local-use NAT64 (64:ff9b:1::/48, RFC 8215), which is why it is local.
        (v6("64:ff9b::"), 96, Restricted::Reserved),
        (v6("64:ff9b:1::"), 48, Restricted::Reserved),
        // IETF protocol assignments: Teredo (2001::/32, which tunnels to an IPv4 address),
        // benchmarking (2001:2::/48), ORCHID and the rest; none is a provider's API.
        (v6("2001::"), 23, Restricted::Reserved),
        // Documentation (RFC 9637) and SRv6 segment identifiers (RFC 9602).
        (v6("3fff::"), 20, Restricted::Reserved),
        (v6("5f00::"), 16, Restricted::Reserved),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

/// Is `ip` allowed, given the ranges a policy entry grants explicitly?
pub fn check(ip: IpAddr, granted: &[IpNet]) -> Result<(), Restricted> {
    let ip = canonical(ip);
    match restriction(ip) {
        None => Ok(()),
        Some(why) if granted.iter().any(|net| net.contains(&ip)) => {
            let _ = why;
            Ok(())
        }
        Some(why) => Err(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_addresses_pass() {
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "2001:200::1",
            "2001:4860:4860::8888",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert_eq!(restriction(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn restricted_addresses_are_named() {
        let cases = [
            ("127.0.0.1", Restricted::Loopback),
            ("127.255.0.9", Restricted::Loopback),
            ("::1", Restricted::Loopback),
            ("10.1.2.3", Restricted::Private),
            ("172.16.0.1", Restricted::Private),
            ("172.31.255.255", Restricted::Private),
            ("192.168.1.1", Restricted::Private),
            ("100.64.0.1", Restricted::Shared),
            ("169.254.1.1", Restricted::LinkLocal),
            ("169.254.169.254", Restricted::CloudMetadata),
            ("100.100.100.200", Restricted::CloudMetadata),
            ("fd00:ec2::254", Restricted::CloudMetadata),
            ("fe80::1", Restricted::LinkLocal),
            ("fd12:3456::1", Restricted::UniqueLocal),
            ("224.0.0.1", Restricted::Multicast),
            ("ff02::1", Restricted::Multicast),
            ("0.0.0.0", Restricted::Unspecified),
            ("::", Restricted::Unspecified),
            ("255.255.255.255", Restricted::Broadcast),
            ("192.0.2.1", Restricted::Reserved),
            ("2001:db8::1", Restricted::Reserved),
            ("64:ff9b::7f00:1", Restricted::Reserved),
            // Found by fuzz/fuzz_targets/url_allowlist.rs against the IANA registries.
            ("2001::1111", Restricted::Reserved),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Restricted::Reserved),
            ("2001:2::1", Restricted::Reserved),
            ("64:ff9b:1::a00:1", Restricted::Reserved),
            ("3fff::1", Restricted::Reserved),
            ("5f00::1", Restricted::Reserved),
        ];
        for (addr, why) in cases {
            assert_eq!(restriction(ip(addr)), Some(why), "{addr}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_ipv4() {
        assert_eq!(
            restriction(ip("::ffff:127.0.0.1")),
            Some(Restricted::Loopback)
        );
        assert_eq!(
            restriction(ip("::ffff:169.254.169.254")),
            Some(Restricted::CloudMetadata)
        );
        assert_eq!(
            restriction(ip("::ffff:a9fe:a9fe")),
            Some(Restricted::CloudMetadata)
        );
        assert_eq!(restriction(ip("::10.0.0.1")), Some(Restricted::Private));
        assert_eq!(restriction(ip("::ffff:8.8.8.8")), None);
    }

    #[test]
    fn grants_open_exactly_their_range() {
        let grant: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert_eq!(check(ip("127.0.0.1"), &grant), Ok(()));
        assert_eq!(check(ip("::ffff:127.0.0.1"), &grant), Ok(()));
        assert_eq!(check(ip("127.0.0.2"), &grant), Err(Restricted::Loopback));
        assert_eq!(
            check(ip("169.254.169.254"), &grant),
            Err(Restricted::CloudMetadata)
        );
        assert_eq!(check(ip("8.8.8.8"), &[]), Ok(()));
    }
}
