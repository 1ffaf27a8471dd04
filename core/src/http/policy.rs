//! The compiled `[http]` policy of one adapter: allow rules with their patterns, methods
//! and address grants, each with the policy line it came from, and the decision of which
//! rule (if any) allows a request. Compiled once at load; a malformed entry fails the load.

use ipnet::IpNet;
use url::Url;

use super::pattern::{Mismatch, UrlPattern, granting_pattern};
use crate::policy::{HttpConfig, Policy};

/// HTTP methods the `http` interface knows, as policies spell them.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// One `[[http.allow]]` entry, compiled.
#[derive(Debug)]
pub struct AllowRule {
    /// The entry's `url`.
    pub pattern: UrlPattern,
    /// The entry's `methods`, upper-case; `None` allows every method.
    pub methods: Option<Vec<String>>,
    /// The non-public ranges the entry's destination may resolve to.
    pub addresses: Vec<IpNet>,
    /// `line 7`, or `[[http.allow]] entry 2` for a policy built in code.
    pub location: String,
}

/// The compiled `[http]` table.
#[derive(Debug)]
pub struct HttpPolicy {
    /// The `[[http.allow]]` entries, in policy order.
    pub rules: Vec<AllowRule>,
    /// Requests per call.
    pub max_requests_per_call: u32,
    /// Largest request body, in bytes.
    pub max_request_body_bytes: u64,
    /// Largest response body, in bytes.
    pub max_response_body_bytes: u64,
    /// Per-request timeout, in milliseconds.
    pub request_timeout_ms: u64,
    /// Longest request URL, in bytes.
    pub max_url_bytes: u64,
    /// Headers per request, secret headers included.
    pub max_request_headers: u32,
    /// Bytes of all request headers together, names and values, secrets in place.
    pub max_request_header_bytes: u64,
}

impl HttpPolicy {
    /// Compile the policy's `[http]` table; errors name the line.
    pub fn compile(policy: &Policy) -> Result<HttpPolicy, String> {
        let HttpConfig {
            allow,
            max_requests_per_call,
            max_request_body_bytes,
            max_response_body_bytes,
            request_timeout_ms,
            max_url_bytes,
            max_request_headers,
            max_request_header_bytes,
        } = &policy.http;
        let mut rules = Vec::with_capacity(allow.len());
        for (index, entry) in allow.iter().enumerate() {
            let location =
                policy.locate(entry.span(), &format!("[[http.allow]] entry {}", index + 1));
            let fail = |message: String| format!("{location}: {message}");
            let config = entry.get_ref();
            let pattern = UrlPattern::parse(&config.url).map_err(fail)?;
            let methods = match &config.methods {
                None => None,
                Some(methods) => {
                    let mut upper = Vec::with_capacity(methods.len());
                    for method in methods {
                        let m = method.to_ascii_uppercase();
                        if !METHODS.contains(&m.as_str()) {
                            return Err(fail(format!(
                                "unknown method {method:?}; expected some of {METHODS:?}"
                            )));
                        }
                        upper.push(m);
                    }
                    Some(upper)
                }
            };
            let mut addresses = Vec::with_capacity(config.addresses.len());
            for range in &config.addresses {
                let net = range
                    .parse::<IpNet>()
                    .or_else(|_| range.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| fail(format!("{range:?} is not an address range (CIDR such as 127.0.0.1/32 or fd00::/8)")))?;
                addresses.push(net);
            }
            rules.push(AllowRule {
                pattern,
                methods,
                addresses,
                location,
            });
        }
        Ok(HttpPolicy {
            rules,
            max_requests_per_call: *max_requests_per_call,
            max_request_body_bytes: *max_request_body_bytes,
            max_response_body_bytes: *max_response_body_bytes,
            request_timeout_ms: *request_timeout_ms,
            max_url_bytes: *max_url_bytes,
            max_request_headers: *max_request_headers,
            max_request_header_bytes: *max_request_header_bytes,
        })
    }

    /// The rule allowing `method url`, or a denial that names what would grant it.
    pub fn decide(&self, method: &str, url: &Url) -> Result<&AllowRule, String> {
        let request = format!("{method} {url}");
        if self.rules.is_empty() {
            return Err(format!(
                "{request} denied: the policy has no [[http.allow]] entries, so all HTTP is denied; \
                 an entry `url = \"{}\"` would allow it",
                granting_pattern(url)
            ));
        }
        let mut closest: Option<(&AllowRule, String)> = None;
        for rule in &self.rules {
            let why = match rule.pattern.mismatch(url) {
                None => match &rule.methods {
                    Some(methods) if !methods.iter().any(|m| m == method) => {
                        format!("allows methods {methods:?}, not {method}")
                    }
                    _ => return Ok(rule),
                },
                Some(Mismatch::Host) | Some(Mismatch::Scheme) => continue,
                Some(Mismatch::Port) => {
                    format!(
                        "allows port {}, not {}",
                        rule.pattern.port(),
                        url.port_or_known_default().unwrap_or(0)
                    )
                }
                Some(Mismatch::Path) => format!(
                    "allows paths under {}, not {}",
                    rule.pattern.path_prefix(),
                    url.path()
                ),
            };
            closest.get_or_insert((rule, why));
        }
        Err(match closest {
            Some((rule, why)) => format!(
                "{request} denied: the [[http.allow]] entry on {} (`{}`) {why}",
                rule.location, rule.pattern
            ),
            None => format!(
                "{request} denied: no [[http.allow]] entry allows {}://{}; an entry `url = \"{}\"` would allow it",
                url.scheme(),
                url.host().map(|h| h.to_string()).unwrap_or_default(),
                granting_pattern(url)
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> HttpPolicy {
        HttpPolicy::compile(&Policy::from_toml(text, "p.toml").unwrap()).unwrap()
    }

    fn compile_error(text: &str) -> String {
        HttpPolicy::compile(&Policy::from_toml(text, "p.toml").unwrap()).unwrap_err()
    }

    const POLICY: &str = r#"
[[http.allow]]
url = "https://api.example.com/v1/"
methods = ["GET", "post"]

[[http.allow]]
url = "http://127.0.0.1:8080/"
addresses = ["127.0.0.1/32"]
"#;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn allowed_requests_find_their_rule() {
        let p = policy(POLICY);
        assert_eq!(
            p.decide("POST", &url("https://api.example.com/v1/dbs"))
                .unwrap()
                .location,
            "line 2"
        );
        let local = p
            .decide("DELETE", &url("http://127.0.0.1:8080/v1/dbs/1"))
            .unwrap();
        assert_eq!(local.location, "line 6");
        assert_eq!(
            local.addresses,
            vec!["127.0.0.1/32".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn denials_name_the_line_that_would_grant() {
        let p = policy(POLICY);
        let deny = |m: &str, u: &str| p.decide(m, &url(u)).unwrap_err();
        assert_eq!(
            deny("GET", "https://evil.example/x"),
            "GET https://evil.example/x denied: no [[http.allow]] entry allows https://evil.example; an entry `url = \"https://evil.example/\"` would allow it"
        );
        assert_eq!(
            deny("DELETE", "https://api.example.com/v1/dbs"),
            "DELETE https://api.example.com/v1/dbs denied: the [[http.allow]] entry on line 2 (`https://api.example.com/v1/`) allows methods [\"GET\", \"POST\"], not DELETE"
        );
        assert_eq!(
            deny("GET", "https://api.example.com/admin"),
            "GET https://api.example.com/admin denied: the [[http.allow]] entry on line 2 (`https://api.example.com/v1/`) allows paths under /v1/, not /admin"
        );
        assert_eq!(
            deny("GET", "http://127.0.0.1:9999/"),
            "GET http://127.0.0.1:9999/ denied: the [[http.allow]] entry on line 6 (`http://127.0.0.1:8080/`) allows port 8080, not 9999"
        );
        assert_eq!(
            deny("GET", "http://api.example.com/v1/"),
            "GET http://api.example.com/v1/ denied: no [[http.allow]] entry allows http://api.example.com; an entry `url = \"http://api.example.com/\"` would allow it"
        );
    }

    #[test]
    fn an_empty_allow_list_denies_everything() {
        let p = policy("");
        assert_eq!(
            p.decide("GET", &url("https://api.example.com/"))
                .unwrap_err(),
            "GET https://api.example.com/ denied: the policy has no [[http.allow]] entries, so all HTTP is denied; an entry `url = \"https://api.example.com/\"` would allow it"
        );
    }

    #[test]
    fn malformed_entries_fail_compilation_naming_the_line() {
        assert_eq!(
            compile_error("[[http.allow]]\nurl = \"ftp://x.example.com/\"\n"),
            "line 1: \"ftp://x.example.com/\": scheme must be http or https, not \"ftp\""
        );
        assert_eq!(
            compile_error(
                "\n[[http.allow]]\nurl = \"https://x.example.com/\"\nmethods = [\"FETCH\"]\n"
            ),
            "line 2: unknown method \"FETCH\"; expected some of [\"GET\", \"HEAD\", \"POST\", \"PUT\", \"PATCH\", \"DELETE\", \"OPTIONS\"]"
        );
        assert_eq!(
            compile_error(
                "[[http.allow]]\nurl = \"https://x.example.com/\"\naddresses = [\"10.0.0.0/33\"]\n"
            ),
            "line 1: \"10.0.0.0/33\" is not an address range (CIDR such as 127.0.0.1/32 or fd00::/8)"
        );
    }
}
