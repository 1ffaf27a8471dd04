//! Arbitrary text as a policy file: `Policy::from_toml`, then what a load does with it
//! (`validate`, `HttpPolicy::compile`, locating secrets by line).
//!
//! Invariants:
//! - nothing panics, whatever the text;
//! - a refusal names the policy's origin, and a `line N` in it is a line of the text;
//! - an accepted policy serialises to TOML that parses to the same policy (name, limits,
//!   `[http]`, `[secrets]`), so what the runtime enforces is what the file says;
//! - a policy that passes `validate` has every limit inside its documented range;
//! - compiling `[http]` keeps one rule per `[[http.allow]]` entry, in order, each with its
//!   own URL, upper-case methods the interface knows, and a line of the text.
#![no_main]

use airlock_core::http::policy::{HttpPolicy, METHODS};
use airlock_core::policy::Policy;
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "fuzz.toml";
const MAX_MEMORY_BYTES: u64 = 1024 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.matches('\n').count() + 1;
    let policy = match Policy::from_toml(text, ORIGIN) {
        Ok(policy) => policy,
        Err(error) => {
            assert_eq!(error.origin, ORIGIN);
            assert!(!error.message.is_empty());
            assert!(error.to_string().starts_with("policy fuzz.toml: "));
            check_line(&error.message, lines);
            return;
        }
    };
    assert_eq!(policy.origin.as_deref(), Some(ORIGIN));

    // What the runtime enforces is what the file says: write the policy back, read it again.
    let written = toml::to_string(&policy)
        .unwrap_or_else(|e| panic!("an accepted policy does not serialise: {e}\n{policy:?}"));
    let reread = Policy::from_toml(&written, "written.toml")
        .unwrap_or_else(|e| panic!("a written policy does not parse: {e}\n{written}"));
    assert_eq!(reread.name, policy.name);
    assert_eq!(reread.limits, policy.limits);
    assert_eq!(reread.http, policy.http);
    assert_eq!(reread.secrets, policy.secrets);

    if policy.validate(ORIGIN, MAX_MEMORY_BYTES).is_ok() {
        let l = &policy.limits;
        assert!(l.memory_bytes() >= 1024 * 1024 && l.memory_bytes() <= MAX_MEMORY_BYTES);
        assert!((10_000..=1 << 50).contains(&l.fuel));
        assert!(l.deadline().as_millis() >= 1 && l.deadline().as_secs() <= 15 * 60);
        assert!(l.max_concurrent_calls >= 1 && l.breaker_failures >= 1);
        assert!(l.max_output_bytes >= 1024 && l.max_instance_id_bytes >= 1);
        let bounds = l.contract_bounds();
        assert_eq!(bounds.max_message_bytes as u64, l.max_output_bytes);
        assert_eq!(
            bounds.max_credential_ttl.as_secs(),
            l.max_credential_ttl_secs
        );
        assert!(policy.http.max_requests_per_call >= 1);
        if let Some(name) = &policy.name {
            assert!(!name.is_empty() && name.len() <= 64 && name.is_ascii());
        }
    }

    match HttpPolicy::compile(&policy) {
        Ok(http) => {
            assert_eq!(http.rules.len(), policy.http.allow.len());
            for (rule, entry) in http.rules.iter().zip(&policy.http.allow) {
                assert_eq!(rule.pattern.to_string(), entry.get_ref().url);
                check_line(&rule.location, lines);
                if let Some(methods) = &rule.methods {
                    assert!(methods.iter().all(|m| METHODS.contains(&m.as_str())));
                }
            }
        }
        Err(message) => check_line(&message, lines),
    }
    for entry in policy.secrets.values() {
        check_line(&policy.locate(entry.span(), "[secrets]"), lines);
    }
});

/// A message that starts with `line N` names a line of the text.
fn check_line(message: &str, lines: usize) {
    if let Some(rest) = message.strip_prefix("line ") {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let line: usize = digits.parse().expect("a line number after `line `");
        assert!(
            (1..=lines).contains(&line),
            "line {line} of {lines}: {message}"
        );
    }
}
