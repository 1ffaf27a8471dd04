//! URL patterns of the policy: `scheme://host[:port][/path-prefix]`, where the host is
//! exact (`api.example.com`, `127.0.0.1`, `[::1]`) or a wildcard over subdomains
//! (`*.example.com`, which does not match `example.com` itself). The port defaults to the
//! scheme's; the path prefix matches on segment boundaries (`/v1` matches `/v1` and
//! `/v1/x`, not `/v10`). Request URLs are parsed by the WHATWG rules, which normalise odd
//! IPv4 spellings, case, dot segments and percent-encoded dots before anything is matched.

use std::fmt;

use url::{Host, Url};

/// A parsed policy URL pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    text: String,
    scheme: String,
    host: HostPattern,
    port: u16,
    path_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// The host as the URL parser serialises it (lower-case domain, canonical IP).
    Exact(String),
    /// `.example.com`: any host ending in it, with at least one more label.
    Subdomains(String),
}

/// Which part of a request URL a pattern rejected, for denial messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The scheme differs.
    Scheme,
    /// The host is neither the pattern's host nor, for a wildcard, a subdomain of it.
    Host,
    /// The port (explicit or the scheme's default) differs.
    Port,
    /// The path is not under the pattern's path prefix.
    Path,
}

impl fmt::Display for UrlPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl UrlPattern {
    /// Parse a pattern; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<UrlPattern, String> {
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            format!("{text:?} is not a URL pattern (expected scheme://host[:port][/path])")
        })?;
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "{text:?}: scheme must be http or https, not {scheme:?}"
            ));
        }
        let wildcard = rest.starts_with("*.");
        let parsable = if wildcard {
            format!("{scheme}://wildcard{}", &rest[1..])
        } else {
            text.to_owned()
        };
        if parsable.contains('*') {
            return Err(format!(
                "{text:?}: `*` may only start the host, as in *.example.com"
            ));
        }
        let url = Url::parse(&parsable).map_err(|e| format!("{text:?} is not a valid URL: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{text:?}: user names and passwords do not belong in a pattern"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{text:?}: a pattern has no query or fragment"));
        }
        let host = match url.host() {
            Some(Host::Domain(domain)) if wildcard => {
                let suffix = domain.strip_prefix("wildcard").unwrap_or(domain).to_owned();
                if suffix.matches('.').count() < 2 {
                    return Err(format!(
                        "{text:?}: a wildcard needs a domain of two labels or more (*.example.com)"
                    ));
                }
                HostPattern::Subdomains(suffix)
            }
            Some(host) if !wildcard => HostPattern::Exact(host.to_string()),
            _ => return Err(format!("{text:?}: `*.` must be followed by a domain name")),
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(UrlPattern {
            text: text.to_owned(),
            scheme: scheme.to_owned(),
            host,
            port,
            path_prefix: url.path().to_owned(),
        })
    }

    /// The first part of `url` this pattern rejects, or `None` if it matches.
    pub fn mismatch(&self, url: &Url) -> Option<Mismatch> {
        if url.scheme() != self.scheme {
            return Some(Mismatch::Scheme);
        }
        let host = url.host().map(|h| h.to_string()).unwrap_or_default();
        let host_ok = match &self.host {
            HostPattern::Exact(exact) => host == *exact,
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        };
        if !host_ok {
            return Some(Mismatch::Host);
        }
        if url.port_or_known_default() != Some(self.port) {
            return Some(Mismatch::Port);
        }
        if !path_within(url.path(), &self.path_prefix) {
            return Some(Mismatch::Path);
        }
        None
    }

    /// Whether `url` matches.
    pub fn matches(&self, url: &Url) -> bool {
        self.mismatch(url).is_none()
    }

    /// Whether every URL this pattern matches is matched by `outer` too: the same scheme
    /// and port; the same host, or an `outer` wildcard `*.suffix` over this pattern's host
    /// (exact or itself a wildcard) that ends in `.suffix`; and this pattern's path prefix
    /// at or under `outer`'s on a segment boundary. An exact host is never within a
    /// different exact host, even one its DNS would resolve alike, and a wildcard is never
    /// within an exact host: when in doubt, it is not within.
    ///
    /// ```
    /// use airlock_core::http::pattern::UrlPattern;
    /// let outer = UrlPattern::parse("https://*.example.com/v1")?;
    /// assert!(UrlPattern::parse("https://api.example.com/v1/databases")?.within(&outer));
    /// assert!(UrlPattern::parse("https://*.eu.example.com/v1/")?.within(&outer));
    /// assert!(!UrlPattern::parse("https://api.example.com/v10")?.within(&outer));
    /// assert!(!UrlPattern::parse("https://example.com/v1")?.within(&outer));
    /// # Ok::<(), String>(())
    /// ```
    pub fn within(&self, outer: &UrlPattern) -> bool {
        let host_within = match (&self.host, &outer.host) {
            (HostPattern::Exact(inner), HostPattern::Exact(outer)) => inner == outer,
            (HostPattern::Exact(inner), HostPattern::Subdomains(suffix)) => {
                inner.len() > suffix.len() && inner.ends_with(suffix.as_str())
            }
            // `.a.example.com` within `.example.com`: both suffixes start with a dot, so
            // the match is on a label boundary, and every host under the inner one has a
            // label before `.example.com`.
            (HostPattern::Subdomains(inner), HostPattern::Subdomains(suffix)) => {
                inner.ends_with(suffix.as_str())
            }
            (HostPattern::Subdomains(_), HostPattern::Exact(_)) => false,
        };
        self.scheme == outer.scheme
            && self.port == outer.port
            && host_within
            // The inner prefix is itself a path the inner pattern matches, and every path
            // it matches is at or under it, so this is exactly "all of them are under the
            // outer prefix".
            && path_within(&self.path_prefix, &outer.path_prefix)
    }

    /// The port a request must use.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path a request's path must be at or under (segment-wise).
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }
}

fn path_within(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix)
            && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
}

/// A pattern that would allow `url`: its scheme, host and (non-default) port, any path.
pub fn granting_pattern(url: &Url) -> String {
    let host = url.host().map(|h| h.to_string()).unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/", url.scheme()),
        None => format!("{}://{host}/", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn exact_hosts_ports_and_paths() {
        let p = UrlPattern::parse("https://api.example.com/v1").unwrap();
        assert!(p.matches(&url("https://api.example.com/v1")));
        assert!(p.matches(&url("https://API.Example.com:443/v1/databases?x=1")));
        assert_eq!(
            p.mismatch(&url("https://api.example.com/v10")),
            Some(Mismatch::Path)
        );
        assert_eq!(
            p.mismatch(&url("https://api.example.com/v1/../admin")),
            Some(Mismatch::Path)
        );
        assert_eq!(
            p.mismatch(&url("https://api.example.com/v1/%2e%2e/admin")),
            Some(Mismatch::Path)
        );
        assert_eq!(
            p.mismatch(&url("http://api.example.com/v1")),
            Some(Mismatch::Scheme)
        );
        assert_eq!(
            p.mismatch(&url("https://api.example.com:8443/v1")),
            Some(Mismatch::Port)
        );
        assert_eq!(
            p.mismatch(&url("https://api.example.com.evil.net/v1")),
            Some(Mismatch::Host)
        );
        assert_eq!(
            p.mismatch(&url("https://evil.net/v1?api.example.com")),
            Some(Mismatch::Host)
        );
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        let p = UrlPattern::parse("https://*.example.com/").unwrap();
        assert!(p.matches(&url("https://a.example.com/x")));
        assert!(p.matches(&url("https://a.b.example.com/")));
        assert_eq!(
            p.mismatch(&url("https://example.com/")),
            Some(Mismatch::Host)
        );
        assert_eq!(
            p.mismatch(&url("https://badexample.com/")),
            Some(Mismatch::Host)
        );
    }

    #[test]
    fn ip_hosts_match_in_any_spelling() {
        let p = UrlPattern::parse("http://127.0.0.1:8080/").unwrap();
        for spelling in [
            "http://127.0.0.1:8080/",
            "http://2130706433:8080/",
            "http://0x7f.1:8080/",
            "http://0177.0.0.1:8080/",
            "http://127.1:8080/",
        ] {
            assert!(p.matches(&url(spelling)), "{spelling}");
        }
        let v6 = UrlPattern::parse("http://[::1]:8080/").unwrap();
        assert!(v6.matches(&url("http://[0:0:0:0:0:0:0:1]:8080/")));
    }

    #[test]
    fn malformed_patterns_say_why() {
        let err = |p: &str| UrlPattern::parse(p).unwrap_err();
        assert_eq!(
            err("api.example.com"),
            "\"api.example.com\" is not a URL pattern (expected scheme://host[:port][/path])"
        );
        assert_eq!(
            err("ftp://x.example.com/"),
            "\"ftp://x.example.com/\": scheme must be http or https, not \"ftp\""
        );
        assert_eq!(
            err("https://a.*.example.com/"),
            "\"https://a.*.example.com/\": `*` may only start the host, as in *.example.com"
        );
        assert_eq!(
            err("https://*.com/"),
            "\"https://*.com/\": a wildcard needs a domain of two labels or more (*.example.com)"
        );
        assert_eq!(
            err("https://x.example.com/?q=1"),
            "\"https://x.example.com/?q=1\": a pattern has no query or fragment"
        );
        assert!(
            err("https://exa mple.com/")
                .starts_with("\"https://exa mple.com/\" is not a valid URL")
        );
    }

    #[test]
    fn within_is_scheme_port_host_and_path_containment() {
        let within = |inner: &str, outer: &str| {
            UrlPattern::parse(inner)
                .unwrap()
                .within(&UrlPattern::parse(outer).unwrap())
        };
        assert!(within(
            "https://api.example.com/v1",
            "https://api.example.com/v1"
        ));
        assert!(within(
            "https://API.example.com:443/v1/x",
            "https://api.example.com/v1"
        ));
        assert!(within(
            "https://api.example.com/v1/",
            "https://api.example.com/v1"
        ));
        assert!(within(
            "https://api.example.com/v1/x",
            "https://api.example.com/v1/"
        ));
        assert!(within(
            "https://api.example.com/v1",
            "https://api.example.com/"
        ));
        assert!(within(
            "https://api.example.com/v1",
            "https://*.example.com/"
        ));
        assert!(within("https://a.b.example.com/", "https://*.example.com/"));
        assert!(within("https://*.b.example.com/", "https://*.example.com/"));
        assert!(within("https://*.example.com/", "https://*.example.com/"));
        // `/v1` matches `/v1` itself, which `/v1/` does not.
        assert!(!within(
            "https://api.example.com/v1",
            "https://api.example.com/v1/"
        ));
        assert!(!within(
            "https://api.example.com/v10",
            "https://api.example.com/v1"
        ));
        assert!(!within(
            "https://api.example.com/",
            "https://api.example.com/v1"
        ));
        assert!(!within(
            "http://api.example.com/v1",
            "https://api.example.com/v1"
        ));
        assert!(!within(
            "https://api.example.com:8443/v1",
            "https://api.example.com/v1"
        ));
        assert!(!within("https://example.com/", "https://*.example.com/"));
        assert!(!within("https://badexample.com/", "https://*.example.com/"));
        assert!(!within(
            "https://*.example.com/",
            "https://*.b.example.com/"
        ));
        assert!(!within(
            "https://*.example.com/",
            "https://api.example.com/"
        ));
        assert!(!within(
            "https://api.example.com.evil.net/",
            "https://*.example.com/"
        ));
        assert!(within("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/"));
        assert!(!within("http://127.0.0.2:8080/", "http://127.0.0.1:8080/"));
    }

    #[test]
    fn granting_patterns() {
        assert_eq!(
            granting_pattern(&url("https://evil.example/x?y")),
            "https://evil.example/"
        );
        assert_eq!(
            granting_pattern(&url("http://127.0.0.1:9999/x")),
            "http://127.0.0.1:9999/"
        );
    }
}
