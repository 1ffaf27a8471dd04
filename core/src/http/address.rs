//! Which IP addresses an adapter may reach. Everything that is not a public unicast address
//! is refused unless the policy grants its range explicitly: loopback, private, shared (CGNAT),
//! link-local (which holds 169.254.169.254), unique-local, multicast, unspecified,
//! broadcast, documentation and benchmark ranges, local-use NAT64, the IETF protocol
//! assignments (2001::/23, Teredo among them), SRv6 SIDs, and the cloud metadata addresses:
//! every block the IANA special-purpose registries mark as not globally reachable
//! (`fuzz/fuzz_targets/url_allowlist.rs` checks against that list).
//!
//! **IPv6 forms that wrap an IPv4 address are judged by the IPv4 address inside**
//! ([`embedded_ipv4`]): IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`,
//! IPv4-translated `::ffff:0:0:0/96`, 6to4 `2002::/16` (the IPv4 address in bits 16..48) and
//! NAT64 `64:ff9b::/96` (the low 32 bits). A restricted address inside makes the wrapper
//! restricted for the same reason, and the denial names the address inside, so
//! `[2002:7f00:1::]` (127.0.0.1) and `[2002:a9fe:a9fe::]` (169.254.169.254) are refused like
//! the addresses they carry. A public address inside is as public as that IPv4 address
//! itself: that is what a DNS64 resolver hands out on an IPv6-only network
//! (`64:ff9b::808:808` for 8.8.8.8), and refusing it would make Airlock unusable there
//! while protecting nothing the IPv4 rules do not. Local-use NAT64 `64:ff9b:1::/48`
//! (RFC 8215) is the exception: the operator's own translator decides where it leads and
//! how it embeds the address, so it is restricted whatever its low 32 bits say (with their
//! reason when they are a restricted IPv4 address).
//!
//! **Grants** (`addresses = [...]`) are matched against the address the host connects to:
//! for IPv4-mapped and IPv4-compatible forms that is the IPv4 address (a dual-stack socket
//! reaches it directly), so `127.0.0.1/32` opens `[::ffff:127.0.0.1]`; the translated, 6to4
//! and NAT64 forms go to a translator or relay, so only a range holding the IPv6 address
//! itself opens them (granting this machine's 127.0.0.1 does not open a relay's).
//!
//! Odd IPv4 spellings (decimal `2130706433`, octal `0177.0.0.1`, hex `0x7f.1`, short
//! `127.1`) never reach this module as text: the URL parser (WHATWG rules) has already
//! normalised them to an address.

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
    /// 240/4, 2001:db8::/32, 2001::/23, local-use NAT64 64:ff9b:1::/48, …).
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

/// An IPv6 form that carries an IPv4 address, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:a.b.c.d` (RFC 4291): a dual-stack socket connects to `a.b.c.d` itself.
    Mapped,
    /// `::a.b.c.d`, IPv4-compatible (RFC 4291, deprecated), except `::` and `::1`.
    Compatible,
    /// `::ffff:0:a.b.c.d`, IPv4-translated (RFC 2765, SIIT).
    Translated,
    /// `2002:AABB:CCDD::/48`, 6to4 (RFC 3056): the IPv4 address in bits 16..48.
    SixToFour,
    /// `64:ff9b::a.b.c.d`, the NAT64 well-known prefix (RFC 6052).
    Nat64,
    /// `64:ff9b:1::/48`, local-use NAT64 (RFC 8215), read as a /96: the low 32 bits.
    Nat64LocalUse,
}

impl Embedding {
    /// How a message names the form, with its prefix.
    pub fn describe(self) -> &'static str {
        match self {
            Embedding::Mapped => "an IPv4-mapped address, ::ffff:0:0/96",
            Embedding::Compatible => "an IPv4-compatible address, ::/96",
            Embedding::Translated => "an IPv4-translated address, ::ffff:0:0:0/96",
            Embedding::SixToFour => "a 6to4 address, 2002::/16",
            Embedding::Nat64 => "a NAT64 address, 64:ff9b::/96",
            Embedding::Nat64LocalUse => "a local-use NAT64 address, 64:ff9b:1::/48",
        }
    }
}

/// The IPv4 address an IPv6 address wraps, and the form it is in; `None` for any other
/// IPv6 address.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<(Ipv4Addr, Embedding)> {
    let s = ip.segments();
    let low = Ipv4Addr::from(u128::from(ip) as u32);
    let form = match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Embedding::Mapped,
        // :: and ::1 are the unspecified and loopback addresses, not 0.0.0.0 and 0.0.0.1.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Embedding::Compatible,
        [0, 0, 0, 0, 0xffff, 0, _, _] => Embedding::Translated,
        [0x2002, hi, lo, ..] => {
            let [a, b] = hi.to_be_bytes();
            let [c, d] = lo.to_be_bytes();
            return Some((Ipv4Addr::new(a, b, c, d), Embedding::SixToFour));
        }
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Embedding::Nat64,
        [0x64, 0xff9b, 1, ..] => Embedding::Nat64LocalUse,
        _ => return None,
    };
    Some((low, form))
}

/// The address a connection to `ip` reaches, which is what grants are matched against:
/// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) IPv6 addresses stand
/// for their IPv4 address; every other address, the other embedding forms included, for
/// itself (see the module docs).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some((v4, Embedding::Mapped | Embedding::Compatible)) => IpAddr::V4(v4),
            _ => IpAddr::V6(v6),
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

/// `None` for a public unicast address; otherwise why it is restricted. An IPv6 form that
/// wraps an IPv4 address is judged by the address inside (see the module docs).
pub fn restriction(ip: IpAddr) -> Option<Restricted> {
    match ip {
        IpAddr::V4(v4) => restriction_v4(v4),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some((v4, Embedding::Nat64LocalUse)) => {
                Some(restriction_v4(v4).unwrap_or(Restricted::Reserved))
            }
            Some((v4, _)) => restriction_v4(v4),
            None => restriction_v6(v6),
        },
    }
}

/// How a denial names why `ip` is restricted (`why` is [`restriction`]'s answer): the
/// reason, and for an IPv6 form that wraps an IPv4 address, the address inside and the
/// form, as in `a loopback address (127.0.0.1 inside a 6to4 address, 2002::/16)`.
pub fn explain(ip: IpAddr, why: Restricted) -> String {
    let IpAddr::V6(v6) = ip else {
        return why.describe().to_owned();
    };
    match embedded_ipv4(v6) {
        Some((v4, form)) if restriction_v4(v4).is_some() => {
            format!("{} ({v4} inside {})", why.describe(), form.describe())
        }
        Some((_, form)) => format!("{} ({})", why.describe(), form.describe()),
        None => why.describe().to_owned(),
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
    let table: [(Ipv6Addr, u8, Restricted); 11] = [
        (v6("fd00:ec2::254"), 128, Restricted::CloudMetadata),
        (Ipv6Addr::UNSPECIFIED, 128, Restricted::Unspecified),
        (Ipv6Addr::LOCALHOST, 128, Restricted::Loopback),
        (v6("fe80::"), 10, Restricted::LinkLocal),
        (v6("fc00::"), 7, Restricted::UniqueLocal),
        (v6("ff00::"), 8, Restricted::Multicast),
        (v6("2001:db8::"), 32, Restricted::Reserved),
        (v6("100::"), 64, Restricted::Reserved),
        // NAT64 (64:ff9b::/96 and local-use 64:ff9b:1::/48) never reaches this table:
        // `restriction` judges it by the IPv4 address inside.
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

/// Is `ip` allowed, given the ranges a policy entry grants explicitly? A restricted
/// address is allowed when a grant holds its [`canonical`] address.
pub fn check(ip: IpAddr, granted: &[IpNet]) -> Result<(), Restricted> {
    match restriction(ip) {
        None => Ok(()),
        Some(why) => {
            let reached = canonical(ip);
            if granted.iter().any(|net| net.contains(&reached)) {
                Ok(())
            } else {
                Err(why)
            }
        }
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
            ("64:ff9b::7f00:1", Restricted::Loopback),
            // Found by fuzz/fuzz_targets/url_allowlist.rs against the IANA registries.
            ("2001::1111", Restricted::Reserved),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Restricted::Reserved),
            ("2001:2::1", Restricted::Reserved),
            ("64:ff9b:1::a00:1", Restricted::Private),
            ("64:ff9b:1::808:808", Restricted::Reserved),
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

    /// Every form that wraps an IPv4 address, around `v4`.
    fn wrappers(v4: &str) -> Vec<(String, Embedding)> {
        let v4: Ipv4Addr = v4.parse().unwrap();
        let [a, b, c, d] = v4.octets();
        let hi = u16::from_be_bytes([a, b]);
        let lo = u16::from_be_bytes([c, d]);
        vec![
            (format!("::ffff:{v4}"), Embedding::Mapped),
            (format!("::{v4}"), Embedding::Compatible),
            (format!("::ffff:0:{v4}"), Embedding::Translated),
            (format!("2002:{hi:x}:{lo:x}::"), Embedding::SixToFour),
            (
                format!("2002:{hi:x}:{lo:x}:1:2:3:4:5"),
                Embedding::SixToFour,
            ),
            (format!("64:ff9b::{v4}"), Embedding::Nat64),
            (format!("64:ff9b:1::{v4}"), Embedding::Nat64LocalUse),
        ]
    }

    #[test]
    fn every_form_that_wraps_ipv4_is_judged_by_the_address_inside() {
        for (inner, why) in [
            ("127.0.0.1", Some(Restricted::Loopback)),
            ("169.254.169.254", Some(Restricted::CloudMetadata)),
            ("10.0.0.1", Some(Restricted::Private)),
            ("100.100.100.200", Some(Restricted::CloudMetadata)),
            ("192.168.1.1", Some(Restricted::Private)),
            ("8.8.8.8", None),
            ("93.184.216.34", None),
        ] {
            for (wrapper, form) in wrappers(inner) {
                let v6: Ipv6Addr = wrapper.parse().unwrap();
                assert_eq!(
                    embedded_ipv4(v6),
                    Some((inner.parse().unwrap(), form)),
                    "{wrapper}"
                );
                let expected = match (form, why) {
                    // Local-use NAT64 leads wherever the operator's translator says.
                    (Embedding::Nat64LocalUse, None) => Some(Restricted::Reserved),
                    _ => why,
                };
                assert_eq!(restriction(IpAddr::V6(v6)), expected, "{wrapper}");
                assert_eq!(
                    check(IpAddr::V6(v6), &[]),
                    expected.map_or(Ok(()), Err),
                    "{wrapper}"
                );
            }
        }
    }

    #[test]
    fn the_issue_examples_are_refused_naming_the_address_inside() {
        let cases = [
            (
                "2002:7f00:1::",
                "a loopback address (127.0.0.1 inside a 6to4 address, 2002::/16)",
            ),
            (
                "2002:a9fe:a9fe::",
                "a cloud metadata address (169.254.169.254 inside a 6to4 address, 2002::/16)",
            ),
            (
                "::ffff:0:7f00:1",
                "a loopback address (127.0.0.1 inside an IPv4-translated address, ::ffff:0:0:0/96)",
            ),
            (
                "::ffff:127.0.0.1",
                "a loopback address (127.0.0.1 inside an IPv4-mapped address, ::ffff:0:0/96)",
            ),
            (
                "64:ff9b::a9fe:a9fe",
                "a cloud metadata address (169.254.169.254 inside a NAT64 address, 64:ff9b::/96)",
            ),
            (
                "64:ff9b:1::808:808",
                "a reserved address (a local-use NAT64 address, 64:ff9b:1::/48)",
            ),
            ("fe80::1", "a link-local address"),
            ("127.0.0.1", "a loopback address"),
        ];
        for (addr, message) in cases {
            let why = check(ip(addr), &[]).unwrap_err();
            assert_eq!(explain(ip(addr), why), message, "{addr}");
        }
    }

    #[test]
    fn only_plain_ipv6_and_unrelated_forms_are_not_wrappers() {
        for plain in [
            "::",
            "::1",
            "2001:db8::1",
            "2003::1",
            "64:ff9b:2::1",
            "::fffe:1:2",
        ] {
            assert_eq!(embedded_ipv4(plain.parse().unwrap()), None, "{plain}");
        }
        // Not 0.0.0.0 or 0.0.0.1: the unspecified and loopback addresses keep their names.
        assert_eq!(restriction(ip("::")), Some(Restricted::Unspecified));
        assert_eq!(restriction(ip("::1")), Some(Restricted::Loopback));
    }

    #[test]
    fn grants_of_the_ipv4_address_open_only_the_forms_that_reach_it() {
        let loopback: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert_eq!(check(ip("::ffff:127.0.0.1"), &loopback), Ok(()));
        assert_eq!(check(ip("::127.0.0.1"), &loopback), Ok(()));
        for relayed in ["2002:7f00:1::", "::ffff:0:7f00:1", "64:ff9b::7f00:1"] {
            assert_eq!(
                check(ip(relayed), &loopback),
                Err(Restricted::Loopback),
                "{relayed}"
            );
            let itself: Vec<IpNet> = vec![IpNet::from(ip(relayed))];
            assert_eq!(check(ip(relayed), &itself), Ok(()), "{relayed}");
            assert_eq!(canonical(ip(relayed)), ip(relayed));
        }
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
