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
//!   contain it (IPv4-mapped and -compatible IPv6 judged as the IPv4 inside);
//! - the decision depends on the address, not its spelling: decimal, hex, octal and short
//!   IPv4 forms are the dotted address, and re-parsing the serialised URL decides the same;
//! - `http::Uri` (what the HTTP client sends with) reads the same host and port from an
//!   allowed URL as the URL parser did;
//! - an address is public only if the IANA special-purpose registries do not mark it as
//!   not globally reachable and std does not call it loopback, private, link-local,
//!   multicast, unspecified, broadcast, documentation or unique-local; `::ffff:a.b.c.d`
//!   is judged exactly as `a.b.c.d`.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use airlock_core::http::address;
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

fn check_address(ip: IpAddr) {
    let why = address::restriction(ip);
    // ::/96 (IPv4-compatible) and ::ffff:0:0/96 (mapped) are judged by the IPv4 inside,
    // which may be public.
    let embedded = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().or_else(|| {
            let s = v6.segments();
            (s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1)).then(|| v6.to_ipv4().expect("compatible"))
        }),
        IpAddr::V4(_) => None,
    };
    match embedded {
        Some(v4) => {
            assert_eq!(
                why,
                address::restriction(IpAddr::V4(v4)),
                "{ip} is judged as {v4}"
            );
        }
        None => assert!(
            !not_global(ip) || why.is_some(),
            "{ip} is not globally reachable, but the runtime calls it public"
        ),
    }
    if let IpAddr::V4(v4) = ip {
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        assert_eq!(
            why,
            address::restriction(mapped),
            "{mapped} is judged as {v4}"
        );
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
