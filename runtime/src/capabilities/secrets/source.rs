//! Where secret values come from. The operator names a source in each `[secrets.NAME]`
//! table (`source = "env:FAKECLOUD_TOKEN"`); the scheme before the colon picks a
//! [`SecretSource`]. Airlock ships `env:` and `file:`; an embedder adds others (Vault, a
//! cloud secret manager) through [`crate::RuntimeConfig::secret_sources`].

use std::fmt;

/// A secret's value. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<{} bytes>)", self.0.len())
    }
}

/// A backend that resolves a locator (the part after `scheme:`) to a value.
pub trait SecretSource: Send + Sync + fmt::Debug {
    /// The scheme this source answers to, such as `env`.
    fn scheme(&self) -> &'static str;
    /// The value at `locator`; the error says why it is not available.
    fn fetch(&self, locator: &str) -> Result<SecretValue, String>;
}

/// `env:NAME`: an environment variable of the Airlock process.
#[derive(Debug, Default)]
pub struct EnvSource;

impl SecretSource for EnvSource {
    fn scheme(&self) -> &'static str {
        "env"
    }

    fn fetch(&self, locator: &str) -> Result<SecretValue, String> {
        match std::env::var(locator) {
            Ok(value) => Ok(SecretValue::new(value)),
            Err(std::env::VarError::NotPresent) => {
                Err(format!("environment variable {locator} is not set"))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("environment variable {locator} is not UTF-8"))
            }
        }
    }
}

/// `file:/path`: the contents of a file, without a trailing newline.
#[derive(Debug, Default)]
pub struct FileSource;

impl SecretSource for FileSource {
    fn scheme(&self) -> &'static str {
        "file"
    }

    fn fetch(&self, locator: &str) -> Result<SecretValue, String> {
        let text =
            std::fs::read_to_string(locator).map_err(|e| format!("cannot read {locator}: {e}"))?;
        Ok(SecretValue::new(text.trim_end_matches(['\n', '\r'])))
    }
}

/// The sources every runtime starts with.
pub(crate) fn default_sources() -> Vec<std::sync::Arc<dyn SecretSource>> {
    vec![
        std::sync::Arc::new(EnvSource),
        std::sync::Arc::new(FileSource),
    ]
}
