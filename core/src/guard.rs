//! The leak guard: every value of a secret granted to the adapter, in the encodings a guest
//! could use to smuggle it (raw, base64 standard and URL-safe with and without padding,
//! hex in either case, percent-encoding), is replaced by `[REDACTED]` in everything the
//! guest returns or says: results, error messages, raw detail, logs, progress messages,
//! stdout and stderr. The receipt counts the replacements.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// The strings to look for, longest first (so an encoding containing another is replaced
/// whole).
#[derive(Debug, Default)]
pub struct LeakGuard {
    needles: Vec<String>,
}

impl LeakGuard {
    /// A guard for these secret values.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> LeakGuard {
        let mut needles = Vec::new();
        for value in values {
            let bytes = value.as_bytes();
            needles.push(value.to_owned());
            for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                needles.push(engine.encode(bytes));
            }
            needles.push(hex::encode(bytes));
            needles.push(hex::encode_upper(bytes));
            needles.push(
                percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            );
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        needles.retain(|n| !n.is_empty());
        LeakGuard { needles }
    }

    /// True if there is nothing to guard.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Redact `text` in place; returns how many replacements were made.
    pub fn redact(&self, text: &mut String) -> u32 {
        let mut count = 0;
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                count += text.matches(needle.as_str()).count() as u32;
                *text = text.replace(needle.as_str(), REDACTED);
            }
        }
        count
    }

    /// Redact every string and object key in a JSON value.
    pub fn redact_json(&self, value: &mut Value) -> u32 {
        match value {
            Value::String(s) => self.redact(s),
            Value::Array(items) => items.iter_mut().map(|v| self.redact_json(v)).sum(),
            Value::Object(map) => {
                let mut count = 0;
                let entries = std::mem::take(map);
                for (mut key, mut v) in entries {
                    count += self.redact(&mut key) + self.redact_json(&mut v);
                    map.insert(key, v);
                }
                count
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_encoding_is_redacted() {
        let secret = "s3cr3t-t0ken/with+chars";
        let guard = LeakGuard::new([secret]);
        let encodings = [
            secret.to_owned(),
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            hex::encode(secret),
            hex::encode_upper(secret),
            "s3cr3t%2Dt0ken%2Fwith%2Bchars".to_owned(),
        ];
        for encoded in encodings {
            let mut text = format!("leak: {encoded}!");
            assert_eq!(guard.redact(&mut text), 1, "{encoded}");
            assert_eq!(text, "leak: [REDACTED]!");
        }
    }

    #[test]
    fn json_strings_and_keys_are_redacted() {
        let guard = LeakGuard::new(["topsecretvalue"]);
        let mut value = json!({ "topsecretvalue": 1, "nested": ["x topsecretvalue y", { "k": "dG9wc2VjcmV0dmFsdWU=" }], "n": 5 });
        assert_eq!(guard.redact_json(&mut value), 3);
        assert_eq!(
            value,
            json!({ "[REDACTED]": 1, "nested": ["x [REDACTED] y", { "k": "[REDACTED]" }], "n": 5 })
        );
    }

    #[test]
    fn nothing_to_guard_changes_nothing() {
        let guard = LeakGuard::new([]);
        let mut text = "plain".to_owned();
        assert_eq!(guard.redact(&mut text), 0);
        assert!(guard.is_empty());
    }
}
