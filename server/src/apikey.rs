//! API keys: `alk_` and 43 characters of URL-safe base64 (32 random bytes from the operating
//! system). A key is shown once, when it is made; storage keeps only its SHA-256, and a
//! presented key is checked by hashing it and comparing the hashes in constant time.

use std::fmt;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every key starts with this, so a leaked key is recognisable (secret scanners, logs).
pub const PREFIX: &str = "alk_";

/// A freshly made API key. Its `Debug` hides it; [`ApiKey::reveal`] is the one way out.
pub struct ApiKey(String);

impl ApiKey {
    /// A new key from 32 bytes of the operating system's random source.
    pub fn generate() -> Result<ApiKey, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Ok(ApiKey(format!("{PREFIX}{text}")))
    }

    /// The key itself, to show the operator once.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// What storage keeps: the key's SHA-256, hex.
    pub fn sha256(&self) -> String {
        key_sha256(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(alk_***)")
    }
}

/// The SHA-256 (hex) of a presented key.
pub fn key_sha256(presented: &str) -> String {
    hex::encode(Sha256::digest(presented.as_bytes()))
}

/// Whether two key hashes are equal, in time that does not depend on where they differ.
pub fn hashes_match(stored: &str, computed: &str) -> bool {
    stored.len() == computed.len() && bool::from(stored.as_bytes().ct_eq(computed.as_bytes()))
}

/// Whether `text` has the shape of a key (so a malformed header is refused before any
/// lookup, with a message that says what a key looks like).
pub fn well_formed(text: &str) -> bool {
    text.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_well_formed_distinct_and_hidden_from_debug() {
        let (one, two) = (ApiKey::generate().unwrap(), ApiKey::generate().unwrap());
        assert!(well_formed(one.reveal()), "{}", one.reveal());
        assert_eq!(one.reveal().len(), PREFIX.len() + 43);
        assert_ne!(one.reveal(), two.reveal());
        assert_eq!(format!("{one:?}"), "ApiKey(alk_***)");
        assert!(!format!("{one:?}").contains(&one.reveal()[4..]));
    }

    #[test]
    fn a_key_matches_its_own_hash_only() {
        let key = ApiKey::generate().unwrap();
        assert!(hashes_match(&key.sha256(), &key_sha256(key.reveal())));
        let other = ApiKey::generate().unwrap();
        assert!(!hashes_match(&key.sha256(), &other.sha256()));
        assert!(!hashes_match(&key.sha256(), ""));
    }

    #[test]
    fn malformed_keys_are_told_apart() {
        for bad in [
            "",
            "alk_",
            "alk_short",
            "sk_live_0123456789",
            &format!("alk_{}", "a".repeat(42)),
            &format!("alk_{}!", "a".repeat(42)),
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
        assert!(well_formed(&format!("alk_{}", "aZ0-_".repeat(8) + "abc")));
    }
}
