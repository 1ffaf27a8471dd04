//! A small `[[http.allow]]` list and a request URL through the same gate the `http`
//! capability applies before it sends anything: WHATWG parsing, http(s) only, no
//! credentials, `HttpPolicy::decide`, and for an IP-literal host `address::check` with the
//! matched entry's grants. Plus the address rules on their own.
//!
//! The input is text, one item a line, so that seeds are readable:
//!
//! ```text
//! allow https://*.example.com/v1/ methods=GET,post addresses=127.0.0.1/32,fd00::/8
//! request GET http://0x7f.1:8080/v1/x
//! probe 169.254.169.254
//! ```
//!
//! Invariants:
//! - nothing panics, whatever the patterns, grants and URL;
//! - an allowed request has the scheme, host (exact, or a strict subdomain of a wildcard),
//!   port (explicit or default) and path (at or under the prefix, on segment boundaries) of
//!   the entry that allowed it, and a method it lists; and each entry matches exactly when a
//!   model of these rules, written here separately, says it does;
//! - an IP-literal host that is not public is allowed only when the entry's `addresses`
//!   contain the address connected to (the IPv4 inside for IPv4-mapped and -compatible
//!   IPv6, the IPv6 address itself for every other form);
//! - the decision depends on the address, not its spelling: decimal, hex, octal and short
//!   IPv4 forms are the dotted address, and re-parsing the serialised URL decides the same;
//! - `http::Uri` (what the HTTP client sends with) reads the same host and port from an
//!   allowed URL as the URL parser did;
//! - an address is public only if the IANA special-purpose registries do not mark it as
//!   not globally reachable and std does not call it loopback, private, link-local,
//!   multicast, unspecified, broadcast, documentation or unique-local;
//! - every IPv6 form that wraps an IPv4 address is judged exactly as the IPv4 address
//!   inside (same restriction, same reason): IPv4-mapped `::ffff:0:0/96`, IPv4-compatible
//!   `::/96`, IPv4-translated `::ffff:0:0:0/96`, 6to4 `2002::/16` (bits 16..48) and NAT64
//!   `64:ff9b::/96`; local-use NAT64 `64:ff9b:1::/48` is restricted whatever it wraps, for
//!   the inner address's reason when that one is restricted. A grant of the IPv4 address
//!   opens the mapped and compatible forms only. The forms are read by a model written
//!   here from the RFC prefixes, apart from `address::embedded_ipv4`.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use airlock_core::http::address::{self, Restricted};
use airlock_core::http::policy::HttpPolicy;
use airlock_core::policy::{AllowConfig, Policy};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use url::{Host, Url};

/// The lines of one input.
#[derive(Debug, Default)]
struct Input {
    allow: Vec<AllowConfig>,
    request: Option<(String, String)>,
    probes: Vec<IpAddr>,
}

fn parse_input(text: &str) -> Input {
    let mut input = Input::default();
    for line in text.lines() {
        let mut words = line.split(' ');
        match words.next() {
            Some("allow") if input.allow.len() < 4 => {
                let Some(url) = words.next() else { continue };
                let mut entry = AllowConfig {
                    url: url.to_owned(),
                    methods: None,
                    addresses: Vec::new(),
                };
                for word in words {
                    if let Some(list) = word.strip_prefix("methods=") {
                        entry.methods = Some(list.split(',').map(str::to_owned).collect());
                    } else if let Some(list) = word.strip_prefix("addresses=") {
                        entry.addresses = list.split(',').map(str::to_owned).collect();
                    }
                }
                input.allow.push(entry);
            }
            Some("request") => {
                if let (Some(method), Some(url)) = (words.next(), words.next()) {
                    input.request = Some((method.to_owned(), url.to_owned()));
                }
            }
            Some("probe") => input
                .probes
                .extend(words.next().and_then(|ip| ip.parse::<IpAddr>().ok())),
            _ => {}
        }
    }
    input
}

/// The five spellings of an IPv4 host that WHATWG parsing turns into the same address.
fn spellings(ip: Ipv4Addr) -> [String; 5] {
    let [a, b, c, d] = ip.octets();
    [
        ip.to_string(),
        u32::from(ip).to_string(),
        format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
        format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        format!("{a}.{}", u32::from(ip) & 0x00ff_ffff),
    ]
}

/// What the `http` capability decides before sending: the index of the allowing entry.
fn gate(policy: &HttpPolicy, method: &str, url: &Url) -> Result<usize, String> {
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("scheme".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials".into());
    }
    let rule = policy.decide(method, url)?;
    if let Some(ip) = ip_literal(url) {
        address::check(ip, &rule.addresses).map_err(|why| why.describe().to_owned())?;
    }
    Ok(policy
        .rules
        .iter()
        .position(|r| std::ptr::eq(r, rule))
        .expect("a rule of this policy"))
}

fn ip_literal(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(_) => None,
    }
}

// The model of a pattern, from its text, written apart from `UrlPattern`.
struct ModelPattern {
    scheme: String,
    /// `Ok(host)` exact, `Err(suffix)` a wildcard's `.suffix`.
    host: Result<String, String>,
    port: u16,
    path: String,
}

fn model_pattern(text: &str) -> Option<ModelPattern> {
    let (scheme, rest) = text.split_once("://")?;
    let wildcard = rest.strip_prefix("*.");
    let stand_in = match wildcard {
        Some(rest) => format!("{scheme}://wildcard-stand-in.{rest}"),
        None => text.to_owned(),
    };
    let url = Url::parse(&stand_in).ok()?;
    let host = url.host_str()?.to_owned();
    Some(ModelPattern {
        scheme: scheme.to_owned(),
        host: match wildcard {
            Some(_) => Err(host.strip_prefix("wildcard-stand-in")?.to_owned()),
            None => Ok(host),
        },
        port: url.port_or_known_default()?,
        path: url.path().to_owned(),
    })
}

fn model_matches(pattern: &ModelPattern, url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host_ok = match &pattern.host {
        Ok(exact) => host == exact,
        Err(suffix) => host
            .strip_suffix(suffix.as_str())
            .is_some_and(|label| !label.is_empty()),
    };
    let path = url.path();
    let path_ok = if pattern.path.ends_with('/') {
        path.starts_with(&pattern.path)
    } else {
        path == pattern.path || path.starts_with(&format!("{}/", pattern.path))
    };
    url.scheme() == pattern.scheme
        && host_ok
        && url.port_or_known_default() == Some(pattern.port)
        && path_ok
}

/// IANA IPv4 and IPv6 special-purpose address registries: the blocks marked "Globally
/// Reachable: False" (and whole blocks whose exceptions are listed there as reachable; we
/// expect the runtime to refuse those too).
const NOT_GLOBAL: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "224.0.0.0/4",
    "::1/128",
    "::/128",
    // Judged by the IPv4 address inside instead (see `model_embedded`); listed so that the
    // registry stays whole here.
    "64:ff9b::/96",
    // Local-use IPv4/IPv6 translation (RFC 8215): NAT64 that can reach private IPv4.
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:2::/48",
    "2001:10::/28",
    "2001:db8::/32",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

fn not_global(ip: IpAddr) -> bool {
    let listed = NOT_GLOBAL
        .iter()
        .any(|net| net.parse::<IpNet>().expect("valid constant").contains(&ip));
    let std_says = match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unspecified()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
        }
    };
    listed || std_says
}

/// The IPv4 address an IPv6 address wraps, read from the RFC prefixes (written apart from
/// `address::embedded_ipv4`), and whether the form is local-use NAT64.
fn model_embedded(v6: Ipv6Addr) -> Option<(Ipv4Addr, bool)> {
    let bits = u128::from(v6);
    let low = Ipv4Addr::from(bits as u32);
    let within = |net: &str| {
        net.parse::<IpNet>()
            .expect("valid constant")
            .contains(&IpAddr::V6(v6))
    };
    if within("::ffff:0:0/96") || within("::ffff:0:0:0/96") || within("64:ff9b::/96") {
        Some((low, false))
    } else if within("::/96") {
        // :: and ::1 are the unspecified and loopback addresses.
        (bits > 1).then_some((low, false))
    } else if within("2002::/16") {
        Some((Ipv4Addr::from((bits >> 80) as u32), false))
    } else if within("64:ff9b:1::/48") {
        Some((low, true))
    } else {
        None
    }
}

/// Every IPv6 form around `v4`: the address, whether it is local-use NAT64, and whether a
/// grant of `v4` itself opens it (the forms a dual-stack socket connects as IPv4).
fn wrappers(v4: Ipv4Addr) -> Vec<(Ipv6Addr, bool, bool)> {
    let n = u128::from(u32::from(v4));
    let v6 = |bits: u128| Ipv6Addr::from(bits);
    let mut forms = vec![
        (v4.to_ipv6_mapped(), false, true),
        (v6((0xffff << 48) | n), false, false),
        (v6((0x2002 << 112) | (n << 80) | 0x1234), false, false),
        (v6((0x64_ff9b << 96) | n), false, false),
        (v6((0x64_ff9b_0001 << 80) | n), true, false),
    ];
    if n > 1 {
        forms.push((v6(n), false, true));
    }
    forms
}

fn check_address(ip: IpAddr) {
    let why = address::restriction(ip);
    let embedded = match ip {
        IpAddr::V6(v6) => model_embedded(v6),
        IpAddr::V4(_) => None,
    };
    match embedded {
        Some((v4, local_use)) => {
            let inner = address::restriction(IpAddr::V4(v4));
            let expected = match (local_use, inner) {
                (true, None) => Some(Restricted::Reserved),
                _ => inner,
            };
            assert_eq!(why, expected, "{ip} is judged by {v4} inside it");
        }
        None => assert!(
            !not_global(ip) || why.is_some(),
            "{ip} is not globally reachable, but the runtime calls it public"
        ),
    }
    if let IpAddr::V4(v4) = ip {
        let own: IpNet = IpNet::from(ip);
        for (wrapper, local_use, reached_as_ipv4) in wrappers(v4) {
            let wrapped = IpAddr::V6(wrapper);
            let judged = address::restriction(wrapped);
            match (local_use, why) {
                (true, None) => assert_eq!(judged, Some(Restricted::Reserved), "{wrapper}"),
                _ => assert_eq!(judged, why, "{wrapper} is judged as {v4}"),
            }
            // A grant of the IPv4 address opens only the forms that connect to it.
            let opened = address::check(wrapped, &[own]);
            if reached_as_ipv4 || judged.is_none() {
                assert_eq!(opened, Ok(()), "{wrapper} with {own} granted");
            } else {
                assert_eq!(opened, judged.map_or(Ok(()), Err), "{wrapper} with {own} granted");
            }
        }
    }
    // No grant: allowed exactly when public. A grant of the address itself opens it, and
    // a grant of another family or a disjoint range does not.
    assert_eq!(address::check(ip, &[]), why.map_or(Ok(()), Err));
    let canonical = address::canonical(ip);
    assert_eq!(address::check(ip, &[IpNet::from(canonical)]), Ok(()));
    let elsewhere: IpNet = match canonical {
        IpAddr::V4(_) => "::/0".parse().expect("net"),
        IpAddr::V6(_) => "0.0.0.0/0".parse().expect("net"),
    };
    assert_eq!(address::check(ip, &[elsewhere]), why.map_or(Ok(()), Err));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let input = parse_input(text);
    for ip in &input.probes {
        check_address(*ip);
    }

    let mut policy = Policy::default();
    for entry in input.allow {
        policy.http.allow.push(toml::Spanned::new(0..0, entry));
    }
    let Ok(http) = HttpPolicy::compile(&policy) else {
        return;
    };
    let Some((method, text)) = input.request else {
        return;
    };
    let Ok(url) = Url::parse(&text) else {
        return;
    };
    if let Some(ip) = ip_literal(&url) {
        check_address(ip);
    }
    let decision = gate(&http, &method, &url);

    // Each entry matches exactly when the model says it does.
    for (rule, entry) in http.rules.iter().zip(&policy.http.allow) {
        let model = model_pattern(&entry.get_ref().url).unwrap_or_else(|| {
            panic!(
                "an accepted pattern the model cannot read: {}",
                rule.pattern
            )
        });
        assert_eq!(
            rule.pattern.matches(&url),
            model_matches(&model, &url),
            "pattern {} and {url}",
            rule.pattern
        );
    }

    if let Ok(index) = decision {
        let rule = &http.rules[index];
        assert!(rule.pattern.matches(&url));
        assert!(url.scheme() == "http" || url.scheme() == "https");
        assert!(url.username().is_empty() && url.password().is_none());
        if let Some(methods) = &rule.methods {
            assert!(methods.contains(&method), "{method} allowed by {methods:?}");
        }
        if let Some(ip) = ip_literal(&url)
            && address::restriction(ip).is_some()
        {
            let canonical = address::canonical(ip);
            assert!(
                rule.addresses.iter().any(|net| net.contains(&canonical)),
                "{ip} is restricted but allowed by {}",
                rule.pattern
            );
        }
        // The client sends to the host and port the policy judged.
        if let Ok(uri) = url.as_str().parse::<http::Uri>() {
            assert_eq!(uri.host(), url.host_str(), "{url}");
            assert_eq!(uri.port_u16(), url.port(), "{url}");
        }
    }

    // The serialised URL decides the same.
    let again = Url::parse(url.as_str()).expect("a serialised URL parses");
    assert_eq!(again, url);
    assert_eq!(gate(&http, &method, &again), decision, "{url}");

    // Every spelling of an IPv4 host is that address and decides as the dotted form does.
    if let Some(Host::Ipv4(ip)) = url.host() {
        for spelling in spellings(ip) {
            let mut respelled = url.clone();
            if respelled.set_host(Some(&spelling)).is_err() {
                continue;
            }
            assert_eq!(respelled.host(), Some(Host::Ipv4(ip)), "{spelling}");
            assert_eq!(gate(&http, &method, &respelled), decision, "{spelling}");
        }
    }
});
