//! Errors of the runtime itself: loading an adapter, reading a policy, opening the database.
//! What a *call* returns is an [`crate::AdapterError`] instead, in the contract's six codes.

use std::path::PathBuf;

/// An error loading an adapter or setting up the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The policy file is malformed or out of range.
    #[error("policy {origin}: {message}")]
    Policy {
        /// The file (or other origin) of the policy.
        origin: String,
        /// What is wrong, with the line where there is one.
        message: String,
    },
    /// The component could not be read.
    #[error("cannot read component {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component wasmtime accepts.
    #[error("{origin} is not a valid WebAssembly component: {message}")]
    InvalidComponent {
        /// Where the bytes came from.
        origin: String,
        /// wasmtime's explanation.
        message: String,
    },
    /// The component does not implement the adapter world.
    #[error("{origin} does not implement the airlock:adapter world: {message}")]
    WorldMismatch {
        /// Where the component came from.
        origin: String,
        /// Which export is missing or mistyped, or which import cannot be granted.
        message: String,
    },
    /// The storage database failed (opening it, migrating it, or an operation).
    #[error("state database {database}: {message}")]
    Database {
        /// The database: `sqlite:PATH` or the PostgreSQL URL without its password.
        database: String,
        /// What failed.
        message: String,
    },
    /// A [`crate::RuntimeConfig`] value is out of range.
    #[error("runtime configuration: {0}")]
    Config(String),
    /// wasmtime could not be configured.
    #[error("engine: {0}")]
    Engine(String),
    /// The adapter's state namespace belongs to another component: the name came from the
    /// file stem (or the embedder's default name), not from the policy, and a component
    /// with another digest, loaded from another path, bound it first. Set `name` in the
    /// policy to share the state deliberately, or pick another name.
    #[error("{origin}: {message}")]
    Namespace {
        /// Where the component came from.
        origin: String,
        /// The namespace, whose it is, and how to proceed.
        message: String,
    },
    /// No data directory was given and there is no home to put the default in.
    #[error(
        "no data directory: neither $XDG_DATA_HOME nor $HOME is set to an absolute path; pass --data-dir DIR (or set $AIRLOCK_DATA_DIR, or RuntimeConfig::data_dir)"
    )]
    NoDataDir,
    /// The data directory, database or cache directory is not private to this user, so
    /// compiled code is not loaded through it.
    #[error("{message}")]
    UntrustedDataDir {
        /// The directory or file that is not private.
        path: PathBuf,
        /// What is wrong with it (owner, mode) and how to fix it.
        message: String,
    },
    /// The compiled-artifact cache failed.
    #[error("artifact cache {path}: {message}")]
    Cache {
        /// The cache directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl From<airlock_core::PolicyError> for Error {
    fn from(error: airlock_core::PolicyError) -> Self {
        let airlock_core::PolicyError { origin, message } = error;
        Error::Policy { origin, message }
    }
}
