//! Secrets and text that may carry them, through the leak guard, as the runtime uses it on
//! every string a guest returns or says (`redact`) and on JSON results (`redact_json`).
//!
//! The input is text so that seeds are readable: `secret VALUE` lines (up to three; values
//! under 8 bytes are skipped, as the runtime refuses them), then text in which
//! `{raw:N}`, `{b64:N}`, `{b64np:N}`, `{b64url:N}`, `{b64urlnp:N}`, `{hex:N}`, `{HEX:N}`
//! and `{pct:N}` stand for secret N in that encoding:
//!
//! ```text
//! secret s3cr3t-t0ken/with+chars
//! token={b64:0}&again={pct:0}
//! ```
//!
//! Invariants:
//! - nothing panics;
//! - after redaction no encoding the guard claims to cover (raw, base64 standard and
//!   URL-safe with and without padding, hex in both cases, percent-encoding of every
//!   non-alphanumeric byte) of any secret remains, in text or in any JSON string or key,
//!   except inside a `[REDACTED]` marker itself (a secret that is part of the marker);
//! - every change is counted, and text without any secret in it comes back unchanged;
//! - `find` and `find_json` (which refuse a result holding a secret) see a secret exactly
//!   where `redact` would replace one, and name a secret one of whose spellings is in the
//!   text; a JSON pointer they give leads to the string (or the object holding the key)
//!   with the secret.
#![no_main]

use airlock_core::guard::{LeakGuard, REDACTED};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// The shortest secret the runtime accepts (`MIN_SECRET_BYTES` in the secrets capability).
const MIN_SECRET_BYTES: usize = 8;

const ENCODINGS: [&str; 8] = [
    "raw", "b64", "b64np", "b64url", "b64urlnp", "hex", "HEX", "pct",
];

fn encode(secret: &str, encoding: &str) -> String {
    let bytes = secret.as_bytes();
    match encoding {
        "raw" => secret.to_owned(),
        "b64" => STANDARD.encode(bytes),
        "b64np" => STANDARD_NO_PAD.encode(bytes),
        "b64url" => URL_SAFE.encode(bytes),
        "b64urlnp" => URL_SAFE_NO_PAD.encode(bytes),
        "hex" => hex::encode(bytes),
        "HEX" => hex::encode_upper(bytes),
        // Every byte but ASCII letters and digits as %XX, upper-case hex.
        "pct" => bytes
            .iter()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(*b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect(),
        other => unreachable!("{other}"),
    }
}

/// Expand `{enc:N}` placeholders.
fn expand(text: &str, secrets: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let placeholder = after.find('}').and_then(|end| {
            let (encoding, index) = after[..end].split_once(':')?;
            let secret = secrets.get(index.parse::<usize>().ok()?)?;
            ENCODINGS
                .contains(&encoding)
                .then(|| (encode(secret, encoding), end))
        });
        match placeholder {
            Some((encoded, end)) => {
                out.push_str(&encoded);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// No needle outside the markers: with every marker cut out (replaced by a character no
/// needle contains), no needle remains; and a needle that is not part of the marker text
/// does not occur at all.
fn assert_clean(output: &str, needles: &[String], context: &str) {
    let cut = ['\u{1}', '\u{7f}', '\u{fffd}', '\u{10ffff}']
        .into_iter()
        .find(|c| needles.iter().all(|n| !n.contains(*c)))
        .expect("some character no needle contains");
    let outside = output.replace(REDACTED, &cut.to_string());
    for needle in needles {
        assert!(
            !outside.contains(needle.as_str()),
            "{needle:?} survives in {output:?} ({context})"
        );
        if !REDACTED.contains(needle.as_str()) {
            assert!(
                !output.contains(needle.as_str()),
                "{needle:?} survives in {output:?} ({context})"
            );
        }
    }
}

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                strings(v, out);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let mut secrets = Vec::new();
    let mut lines = Vec::new();
    for line in input.split('\n') {
        match line.strip_prefix("secret ") {
            Some(value) if secrets.len() < 3 => {
                if value.len() >= MIN_SECRET_BYTES {
                    secrets.push(value.to_owned());
                }
            }
            _ => lines.push(line),
        }
    }
    let text = expand(&lines.join("\n"), &secrets);
    let needles: Vec<String> = secrets
        .iter()
        .flat_map(|s| ENCODINGS.map(|e| encode(s, e)))
        .collect();
    let names: Vec<String> = (0..secrets.len()).map(|i| format!("secret-{i}")).collect();
    let guard = LeakGuard::new(names.iter().map(String::as_str).zip(secrets.iter().map(String::as_str)));
    assert_eq!(guard.is_empty(), secrets.is_empty());

    let mut redacted = text.clone();
    let count = guard.redact(&mut redacted);
    // A result is refused exactly when redaction would have changed it, and the refusal
    // names a secret that is really there.
    let found = guard.find(&text);
    assert_eq!(found.is_some(), count > 0, "find {found:?}, {count} replaced in {text:?}");
    if let Some(name) = found {
        let index = names.iter().position(|n| n == name).expect("a granted name");
        assert!(
            ENCODINGS.iter().any(|e| text.contains(&encode(&secrets[index], e))),
            "{name} named, but none of its spellings is in {text:?}"
        );
    }
    assert_clean(&redacted, &needles, "text");
    if redacted != text {
        assert!(count > 0, "uncounted change: {text:?} -> {redacted:?}");
    }
    if needles.iter().all(|n| !text.contains(n.as_str())) {
        assert_eq!(redacted, text);
    }
    // Redacting again finds nothing more.
    let mut twice = redacted.clone();
    guard.redact(&mut twice);
    assert_clean(&twice, &needles, "twice");

    // The same text as JSON keys and values, nested, as a guest's result carries it.
    let mut value = json!({
        text.clone(): [text.clone(), { "k": text.clone(), "n": 1 }],
        "plain": text.clone(),
    });
    let leak = guard.find_json(&value, "/metadata");
    assert_eq!(leak.is_some(), count > 0, "{leak:?}");
    if let Some(leak) = &leak {
        let at = leak
            .pointer
            .strip_prefix("/metadata")
            .expect("the pointer starts where it was told to");
        let target = value.pointer(at).expect("the pointer leads into the value");
        if leak.in_key {
            let keys = target.as_object().expect("a key's pointer names an object");
            assert!(keys.keys().any(|k| guard.find(k).is_some()), "{leak:?}");
        } else {
            let text = target.as_str().expect("a value's pointer names a string");
            assert_eq!(guard.find(text), Some(leak.secret.as_str()), "{leak:?}");
        }
    }
    let json_count = guard.redact_json(&mut value);
    let mut found = Vec::new();
    strings(&value, &mut found);
    for s in &found {
        assert_clean(s, &needles, "json");
    }
    assert_eq!(json_count == 0, count == 0);
});
