//! The leak guard: every value of a secret granted to the adapter, in the encodings a guest
//! could use to smuggle it (raw, base64 standard and URL-safe with and without padding,
//! hex in either case, percent-encoding), is looked for in everything the guest returns or
//! says. In a returned result the runtime refuses the call and names the secret and the
//! field ([`LeakGuard::find_json`]); in error messages, raw detail, logs, progress messages,
//! stdout and stderr it is replaced by `[REDACTED]` ([`LeakGuard::redact`]). The receipt
//! counts the replacements.
//!
//! Replacing one encoding can make another appear: with two secrets, `abcdefgh[` and
//! `zzzzzzzz`, the text `abcdefghzzzzzzzz` becomes `abcdefgh[REDACTED]`, which holds the
//! first secret whole. So redaction repeats until no encoding is left anywhere but inside
//! a `[REDACTED]` marker (which a secret such as `REDACTED` can only be part of), and a
//! replacement that cuts into a marker takes the whole marker with it. A text that still
//! forms secrets after eight rounds is replaced whole. Each round is one pass of an
//! Aho-Corasick automaton over the text, so redaction is linear in the text's length.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Rounds of redaction before a text that keeps forming secrets is replaced whole.
const MAX_ROUNDS: usize = 8;

/// The strings to look for: every granted value in every covered encoding, in one
/// Aho-Corasick automaton built once per adapter, so that a round over a text costs one
/// pass over it (plus its matches), however many secrets and encodings there are.
/// Clones share the automaton.
#[derive(Clone, Default)]
pub struct LeakGuard {
    inner: Option<Arc<Needles>>,
}

struct Needles {
    automaton: AhoCorasick,
    /// For each pattern of the automaton, the index of the secret it encodes in `names`.
    owner: Vec<usize>,
    /// The names the secrets were granted under.
    names: Vec<String>,
}

/// The names only: a guard's debug output must never print what it guards.
impl fmt::Debug for LeakGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("LeakGuard");
        if let Some(needles) = &self.inner {
            out.field("secrets", &needles.names)
                .field("needles", &needles.owner.len());
        }
        out.finish()
    }
}

/// A granted secret found in a field a guest returned ([`LeakGuard::find_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The name the secret was granted under.
    pub secret: String,
    /// Where: a JSON pointer (RFC 6901) into the result, such as `/connection/apiToken`.
    pub pointer: String,
    /// True if the secret is in an object key at `pointer` (which then names the object
    /// holding that key, since the key itself cannot be shown).
    pub in_key: bool,
}

/// `the secret "NAME" in /connection/apiToken`, or `… in a key of /metadata`.
impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        if self.in_key {
            write!(f, "the secret {:?} in a key of {pointer}", self.secret)
        } else {
            write!(f, "the secret {:?} in {pointer}", self.secret)
        }
    }
}

/// Every encoding of `value` the guard covers: raw, base64 (standard and URL-safe, with and
/// without padding), hex (both cases) and percent-encoding.
pub fn encodings(value: &str) -> [String; 8] {
    let bytes = value.as_bytes();
    [
        value.to_owned(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        hex::encode(bytes),
        hex::encode_upper(bytes),
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
    ]
}

/// The marker that covers byte `at` of `text`, if any. A marker is ten ASCII bytes and
/// cannot overlap another, so this looks at ten places at most.
fn marker_at(text: &str, at: usize) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    (at.saturating_sub(REDACTED.len() - 1)..=at)
        .find(|&start| bytes[start..].starts_with(REDACTED.as_bytes()))
        .map(|start| start..start + REDACTED.len())
}

impl LeakGuard {
    /// A guard for these secrets, each given as (the name it was granted under, value).
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> LeakGuard {
        let mut names = Vec::new();
        let mut patterns: Vec<(String, usize)> = Vec::new();
        for (index, (name, value)) in secrets.into_iter().enumerate() {
            names.push(name.to_owned());
            patterns.extend(encodings(value).into_iter().map(|n| (n, index)));
        }
        // One pattern per distinct needle; a needle two secrets share names the first.
        let mut seen = std::collections::HashSet::new();
        patterns.retain(|(needle, _)| !needle.is_empty() && seen.insert(needle.clone()));
        if patterns.is_empty() {
            return LeakGuard::default();
        }
        // Standard semantics report every occurrence, overlapping ones included.
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(patterns.iter().map(|(needle, _)| needle))
            .expect("a few hundred short needles fit any automaton");
        LeakGuard {
            inner: Some(Arc::new(Needles {
                automaton,
                owner: patterns.iter().map(|(_, owner)| *owner).collect(),
                names,
            })),
        }
    }

    /// True if there is nothing to guard.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// The longest needle, in bytes (0 with nothing to guard). A caller that cuts a text
    /// at `n` bytes redacts its first `n + max_needle_len() - 1` bytes first, so that no
    /// part of a secret survives at the cut.
    pub fn max_needle_len(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |n| n.automaton.max_pattern_len())
    }

    /// Redact `text` in place; returns how many replacements were made.
    pub fn redact(&self, text: &mut String) -> u32 {
        let Some(needles) = &self.inner else {
            return 0;
        };
        let mut count = 0;
        // One round suffices unless a replacement formed a new occurrence; each round
        // removes bytes outside markers or merges markers, so it ends. But a guest that
        // can read a secret shaped like `D]…` could chain replacements through a long
        // text, one round each, and redaction runs on the host after the call's limits:
        // past MAX_ROUNDS the whole text goes, which keeps the work linear in its length.
        for _ in 0..MAX_ROUNDS {
            let spans = needles.spans(text);
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
        if needles.first(text).is_some() {
            *text = REDACTED.to_owned();
            count += 1;
        }
        count
    }

    /// The name of a secret `text` holds, in any covered encoding, outside a marker.
    pub fn find(&self, text: &str) -> Option<&str> {
        let needles = self.inner.as_ref()?;
        needles
            .first(text)
            .map(|owner| needles.names[owner].as_str())
    }

    /// The first string or object key in `value` (depth first, keys before their values)
    /// that holds a secret; the pointer starts with `pointer`.
    pub fn find_json(&self, value: &Value, pointer: &str) -> Option<Leak> {
        self.inner.as_ref()?;
        let mut at = pointer.to_owned();
        self.find_in(value, &mut at)
    }

    /// [`LeakGuard::find_json`] on a JSON object held as its map.
    pub fn find_object(&self, map: &Map<String, Value>, pointer: &str) -> Option<Leak> {
        self.inner.as_ref()?;
        let mut at = pointer.to_owned();
        self.find_entries(map, &mut at)
    }

    /// [`LeakGuard::find`] as a [`Leak`] at `pointer`.
    pub fn find_text(&self, text: &str, pointer: &str) -> Option<Leak> {
        self.find(text).map(|name| Leak {
            secret: name.to_owned(),
            pointer: pointer.to_owned(),
            in_key: false,
        })
    }

    fn find_in(&self, value: &Value, pointer: &mut String) -> Option<Leak> {
        match value {
            Value::String(s) => self.find_text(s, pointer),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                let found = self.find_in(item, pointer);
                pointer.truncate(len);
                found
            }),
            Value::Object(map) => self.find_entries(map, pointer),
            _ => None,
        }
    }

    fn find_entries(&self, map: &Map<String, Value>, pointer: &mut String) -> Option<Leak> {
        map.iter().find_map(|(key, item)| {
            if let Some(mut leak) = self.find_text(key, pointer) {
                leak.in_key = true;
                return Some(leak);
            }
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            let found = self.find_in(item, pointer);
            pointer.truncate(len);
            found
        })
    }

    /// Redact every string and object key in a JSON value.
    pub fn redact_json(&self, value: &mut Value) -> u32 {
        if self.is_empty() {
            return 0;
        }
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

impl Needles {
    /// Where `text` holds a needle other than inside a marker: sorted, overlapping
    /// occurrences merged, each widened to the whole of any marker it cuts into.
    ///
    /// Linear in the text and its matches: the automaton reports every occurrence, in the
    /// order of their ends, in one pass; a marker is found by looking back at most ten
    /// bytes; and merging keeps a stack of disjoint spans, which a new occurrence can only
    /// join at its top (every span below ends before the top one starts), so each span
    /// is pushed and popped once.
    fn spans(&self, text: &str) -> Vec<Range<usize>> {
        let mut merged: Vec<Range<usize>> = Vec::new();
        let Ok(matches) = self.automaton.try_find_overlapping_iter(text) else {
            // Cannot happen with a Standard automaton; if it did, the whole text goes.
            #[allow(clippy::single_range_in_vec_init)] // one span: the whole text
            return vec![0..text.len()];
        };
        for found in matches {
            let Some(mut span) = self.outside_markers(text, found.start()..found.end()) else {
                continue;
            };
            while let Some(last) = merged.last() {
                if span.start >= last.end {
                    break;
                }
                span.start = span.start.min(last.start);
                span.end = span.end.max(last.end);
                merged.pop();
            }
            merged.push(span);
        }
        merged
    }

    /// The owner of the first occurrence of a needle outside a marker.
    fn first(&self, text: &str) -> Option<usize> {
        let Ok(mut matches) = self.automaton.try_find_overlapping_iter(text) else {
            return Some(0);
        };
        matches
            .find(|m| self.outside_markers(text, m.start()..m.end()).is_some())
            .map(|m| self.owner[m.pattern().as_usize()])
    }

    /// `span` widened to the whole of any marker it cuts into, or `None` if it lies inside
    /// one marker (a secret such as `REDACTED` that is part of the marker text).
    fn outside_markers(&self, text: &str, span: Range<usize>) -> Option<Range<usize>> {
        let first = marker_at(text, span.start);
        let last = marker_at(text, span.end - 1);
        match (first, last) {
            (Some(a), Some(b)) if a == b => None,
            (first, last) => {
                Some(first.map_or(span.start, |m| m.start)..last.map_or(span.end, |m| m.end))
            }
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
        let guard = LeakGuard::new([("token", secret)]);
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
        let guard = LeakGuard::new([("token", "topsecretvalue")]);
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
        let guard = LeakGuard::new([("a", "abcdefgh["), ("z", "zzzzzzzz")]);
        let mut text = "abcdefghzzzzzzzz".to_owned();
        assert_eq!(guard.redact(&mut text), 2);
        assert_eq!(text, "[REDACTED]");
        assert!(!text.contains("abcdefgh["));

        let guard = LeakGuard::new([("d", "D]tail-of-it"), ("s", "s3cr3t-value")]);
        let mut text = "s3cr3t-valuetail-of-it".to_owned();
        guard.redact(&mut text);
        assert_eq!(text, "[REDACTED]");
    }

    #[test]
    fn a_text_that_keeps_forming_secrets_is_replaced_whole() {
        // Each replacement puts `D]` before the next `chain!`: one new occurrence a round.
        let guard = LeakGuard::new([("d", "D]chain!"), ("s", "s3cr3t-value")]);
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
        let guard = LeakGuard::new([("r", "REDACTED")]);
        let mut text = "a REDACTED b [REDACTED] c".to_owned();
        assert_eq!(guard.redact(&mut text), 1);
        assert_eq!(text, "a [REDACTED] b [REDACTED] c");
        // Overlapping occurrences are one replacement; adjacent ones stay two.
        let guard = LeakGuard::new([("ab", "abababab"), ("s", "s3cr3t-value")]);
        let mut text = "ababababab|s3cr3t-values3cr3t-value".to_owned();
        assert_eq!(guard.redact(&mut text), 3);
        assert_eq!(text, "[REDACTED]|[REDACTED][REDACTED]");
    }

    #[test]
    fn the_secret_a_returned_field_holds_is_named_with_its_pointer() {
        let guard = LeakGuard::new([
            ("provider-token", "s3cr3t-t0ken/with+chars"),
            ("other", "another-value-1"),
        ]);
        let value = json!({
            "host": "db.example",
            "auth": { "a/b~c": ["fine", format!("Bearer {}", hex::encode("another-value-1"))] },
        });
        assert_eq!(
            guard.find_json(&value, "/connection"),
            Some(Leak {
                secret: "other".into(),
                pointer: "/connection/auth/a~1b~0c/1".into(),
                in_key: false,
            })
        );
        assert_eq!(
            guard.find_json(&value, "/connection").unwrap().to_string(),
            "the secret \"other\" in /connection/auth/a~1b~0c/1"
        );
        // A key is not shown: the pointer names the object that holds it.
        let value = json!({ "nested": { "czNjcjN0LXQwa2VuL3dpdGgrY2hhcnM": 1 } });
        let leak = guard.find_json(&value, "/metadata").unwrap();
        assert_eq!(
            leak.to_string(),
            "the secret \"provider-token\" in a key of /metadata/nested"
        );
        assert_eq!(guard.find_json(&json!({ "k": "[REDACTED]" }), ""), None);
        assert_eq!(
            guard.find("s3cr3t%2Dt0ken%2Fwith%2Bchars"),
            Some("provider-token")
        );
        assert_eq!(guard.find("nothing here"), None);
        // Inside a marker is not a leak, as redaction leaves it there.
        let guard = LeakGuard::new([("r", "REDACTED")]);
        assert_eq!(guard.find("[REDACTED]"), None);
        assert_eq!(guard.find("REDACTED"), Some("r"));
    }

    #[test]
    fn debug_output_names_secrets_and_never_shows_them() {
        // Twelve bytes: base64 needs no padding and holds no `+` or `/`, so its four
        // spellings are one needle; with raw, hex, HEX and percent-encoding, five.
        let guard = LeakGuard::new([("token", "s3cr3t-value")]);
        assert_eq!(
            format!("{guard:?}"),
            "LeakGuard { secrets: [\"token\"], needles: 5 }"
        );
        assert_eq!(guard.max_needle_len(), "s3cr3t-value".len() * 2);
    }

    #[test]
    fn a_large_text_dense_with_secrets_and_markers_is_redacted_in_one_pass() {
        // Every occurrence used to be checked against every marker already in the text:
        // a guest that writes `[REDACTED]` before each spelling of a revealed secret made
        // that quadratic (40,000 of each: 1.6 billion checks, on the host, after the
        // call's limits). Each encoding of three secrets, each after a literal marker.
        let secrets = [
            ("a", "first-secret-01"),
            ("b", "second/secret+2"),
            ("c", "third~secret~3"),
        ];
        let guard = LeakGuard::new(secrets);
        let spellings: Vec<String> = secrets.iter().flat_map(|(_, v)| encodings(v)).collect();
        let mut text = String::new();
        let mut expected = String::new();
        for i in 0..40_000 {
            text.push_str(REDACTED);
            text.push_str(&spellings[i % spellings.len()]);
            text.push(' ');
            expected.push_str("[REDACTED][REDACTED] ");
        }
        let started = std::time::Instant::now();
        assert_eq!(guard.redact(&mut text), 40_000);
        assert_eq!(text, expected);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
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
