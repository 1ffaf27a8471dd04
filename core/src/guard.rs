//! The leak guard: every value of a secret granted to the adapter, in the encodings a guest
//! could use to smuggle it (raw, base64 standard and URL-safe with and without padding,
//! hex in either case, percent-encoding), is replaced by `[REDACTED]` in everything the
//! guest returns or says: results, error messages, raw detail, logs, progress messages,
//! stdout and stderr. The receipt counts the replacements.
//!
//! Replacing one encoding can make another appear: with two secrets, `abcdefgh[` and
//! `zzzzzzzz`, the text `abcdefghzzzzzzzz` becomes `abcdefgh[REDACTED]`, which holds the
//! first secret whole. So redaction repeats until no encoding is left anywhere but inside
//! a `[REDACTED]` marker (which a secret such as `REDACTED` can only be part of), and a
//! replacement that cuts into a marker takes the whole marker with it. A text that still
//! forms secrets after eight rounds is replaced whole.

use std::ops::Range;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Rounds of redaction before a text that keeps forming secrets is replaced whole.
const MAX_ROUNDS: usize = 8;

/// The strings to look for: every granted value in every covered encoding.
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
        // One round suffices unless a replacement formed a new occurrence; each round
        // removes bytes outside markers or merges markers, so it ends. But a guest that
        // can read a secret shaped like `D]…` could chain replacements through a long
        // text, one round each, and redaction runs on the host after the call's limits:
        // past MAX_ROUNDS the whole text goes, which keeps the work linear in its length.
        for _ in 0..MAX_ROUNDS {
            let spans = self.spans(text);
            if spans.is_empty() {
                return count;
            }
            let mut redacted = String::with_capacity(text.len());
            let mut done = 0;
            for span in &spans {
                redacted.push_str(&text[done..span.start]);
                redacted.push_str(REDACTED);
                done = span.end;
            }
            redacted.push_str(&text[done..]);
            *text = redacted;
            count += spans.len() as u32;
        }
        if !self.spans(text).is_empty() {
            *text = REDACTED.to_owned();
            count += 1;
        }
        count
    }

    /// Where `text` holds a needle other than inside a marker: sorted, overlapping
    /// occurrences merged, each widened to the whole of any marker it cuts into.
    fn spans(&self, text: &str) -> Vec<Range<usize>> {
        let markers: Vec<Range<usize>> = text
            .match_indices(REDACTED)
            .map(|(at, _)| at..at + REDACTED.len())
            .collect();
        let mut found: Vec<Range<usize>> = Vec::new();
        for needle in &self.needles {
            let mut from = 0;
            while let Some(at) = text[from..].find(needle.as_str()) {
                let start = from + at;
                let span = start..start + needle.len();
                if !markers
                    .iter()
                    .any(|m| m.start <= span.start && span.end <= m.end)
                {
                    found.push(span);
                }
                // Overlapping occurrences count: step one character, not one needle.
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
        }
        if found.is_empty() {
            return found;
        }
        for span in &mut found {
            for m in &markers {
                if m.start < span.end && span.start < m.end {
                    span.start = span.start.min(m.start);
                    span.end = span.end.max(m.end);
                }
            }
        }
        found.sort_by_key(|s| (s.start, s.end));
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(found.len());
        for span in found {
            match merged.last_mut() {
                Some(last) if span.start < last.end => last.end = last.end.max(span.end),
                _ => merged.push(span),
            }
        }
        merged
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
    fn a_replacement_that_forms_another_secret_is_redacted_too() {
        // Replacing the second secret put `[` after the first one's other bytes, and the
        // first secret stood whole in the output (fuzz/corpus/redactor/reformed.txt).
        let guard = LeakGuard::new(["abcdefgh[", "zzzzzzzz"]);
        let mut text = "abcdefghzzzzzzzz".to_owned();
        assert_eq!(guard.redact(&mut text), 2);
        assert_eq!(text, "[REDACTED]");
        assert!(!text.contains("abcdefgh["));

        let guard = LeakGuard::new(["D]tail-of-it", "s3cr3t-value"]);
        let mut text = "s3cr3t-valuetail-of-it".to_owned();
        guard.redact(&mut text);
        assert_eq!(text, "[REDACTED]");
    }

    #[test]
    fn a_text_that_keeps_forming_secrets_is_replaced_whole() {
        // Each replacement puts `D]` before the next `chain!`: one new occurrence a round.
        let guard = LeakGuard::new(["D]chain!", "s3cr3t-value"]);
        let mut text = format!("s3cr3t-value{}", "chain!".repeat(10_000));
        let count = guard.redact(&mut text);
        assert_eq!(text, "[REDACTED]");
        assert_eq!(count, MAX_ROUNDS as u32 + 1);
        // Three links settle within the rounds and keep the text around them.
        let mut text = format!("before s3cr3t-value{} after", "chain!".repeat(3));
        assert_eq!(guard.redact(&mut text), 4);
        assert_eq!(text, "before [REDACTED] after");
    }

    #[test]
    fn markers_stay_whole_and_overlaps_are_one_replacement() {
        // A secret that is part of the marker is left inside markers, not chased forever.
        let guard = LeakGuard::new(["REDACTED"]);
        let mut text = "a REDACTED b [REDACTED] c".to_owned();
        assert_eq!(guard.redact(&mut text), 1);
        assert_eq!(text, "a [REDACTED] b [REDACTED] c");
        // Overlapping occurrences are one replacement; adjacent ones stay two.
        let guard = LeakGuard::new(["abababab", "s3cr3t-value"]);
        let mut text = "ababababab|s3cr3t-values3cr3t-value".to_owned();
        assert_eq!(guard.redact(&mut text), 3);
        assert_eq!(text, "[REDACTED]|[REDACTED][REDACTED]");
    }

    #[test]
    fn nothing_to_guard_changes_nothing() {
        let guard = LeakGuard::new([]);
        let mut text = "plain".to_owned();
        assert_eq!(guard.redact(&mut text), 0);
        assert!(guard.is_empty());
    }
}
