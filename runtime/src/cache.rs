//! Compiled components, cached on disk. Compiling costs tens of milliseconds; loading a
//! precompiled artifact costs tens of microseconds. An artifact is keyed by the SHA-256 of
//! the component and by the engine's compatibility hash (wasmtime version and settings), and
//! is deserialized only if the database holds the digest Airlock recorded when it wrote the
//! file: a file that someone else dropped into the cache directory is never loaded, because
//! deserializing is only safe for bytes wasmtime itself produced.
//!
//! The digest is only as trustworthy as the database that holds it. So before it reads or
//! writes anything, the cache checks that the data directory, the database file and
//! `cache/` belong to the user running Airlock and that nobody else may write them (as ssh
//! does with its keys); if not, the load fails with [`Error::UntrustedDataDir`], saying
//! which path, what is wrong and how to fix it. Failing, rather than compiling without the
//! cache, also keeps the adapter's state out of a database that others can rewrite.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::Error;
use crate::storage::sqlite::SqliteDb;

/// Whether a load compiled or reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Compiled now (and written to the cache).
    Compiled,
    /// Loaded a precompiled artifact from the cache.
    Hit,
}

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    db: SqliteDb,
    engine_key: String,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactCache {
    pub(crate) fn new(dir: PathBuf, db: SqliteDb, engine: &Engine) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache {
            dir,
            db,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn fail(&self, message: String) -> Error {
        Error::Cache {
            path: self.dir.clone(),
            message,
        }
    }

    /// The component for `bytes` (whose digest is `digest`), from the cache or compiled.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &str,
        origin: &str,
    ) -> Result<(Component, CacheOutcome), Error> {
        let key = format!("{digest}-{}", self.engine_key);
        let path = self.dir.join(format!("{key}.cwasm"));
        self.check_private(&path)?;
        if let Some(component) = self.try_hit(engine, &key, &path)? {
            return Ok((component, CacheOutcome::Hit));
        }
        let component = Component::new(engine, bytes).map_err(|e| Error::InvalidComponent {
            origin: origin.to_owned(),
            message: format!("{e:#}"),
        })?;
        if let Err(error) = self.store(&key, &path, &component) {
            // A cache that cannot be written costs speed, not correctness.
            tracing::warn!(target: "airlock::cache", %error, "could not cache compiled component");
        }
        Ok((component, CacheOutcome::Compiled))
    }

    /// Refuse a data directory, database, cache directory or artifact that is not private
    /// to this user (see the module's documentation).
    fn check_private(&self, artifact: &Path) -> Result<(), Error> {
        let database = self.db.path();
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        let data_dir = database.parent().filter(|p| !p.as_os_str().is_empty());
        let candidates = [
            data_dir,
            Some(database),
            Some(Path::new(&wal)),
            Some(self.dir.as_path()),
            Some(artifact),
        ];
        for path in candidates.into_iter().flatten() {
            // What does not exist yet holds nothing, and the cache creates it private.
            if !path.exists() {
                continue;
            }
            crate::datadir::check_private(path).map_err(|message| Error::UntrustedDataDir {
                path: path.to_owned(),
                message,
            })?;
        }
        Ok(())
    }

    fn try_hit(&self, engine: &Engine, key: &str, path: &Path) -> Result<Option<Component>, Error> {
        let Some(recorded) = self.db.artifact_digest(key).map_err(|e| self.fail(e.0))? else {
            return Ok(None);
        };
        let Ok(bytes) = std::fs::read(path) else {
            return Ok(None);
        };
        if sha256_hex(&bytes) != recorded {
            tracing::warn!(target: "airlock::cache", path = %path.display(), "cached artifact does not match its recorded digest; recompiling");
            return Ok(None);
        }
        // SAFETY: the bytes are exactly those this cache serialized from a `Component` of an
        // engine with the same compatibility hash (checked by digest above); wasmtime
        // additionally refuses artifacts from other versions or settings.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &bytes) };
        match component {
            Ok(component) => Ok(Some(component)),
            Err(error) => {
                tracing::warn!(target: "airlock::cache", %error, "cached artifact did not load; recompiling");
                Ok(None)
            }
        }
    }

    fn store(&self, key: &str, path: &Path, component: &Component) -> Result<(), Error> {
        let bytes = component
            .serialize()
            .map_err(|e| self.fail(format!("serialize: {e:#}")))?;
        crate::datadir::create_private_dir(&self.dir)
            .map_err(|e| self.fail(format!("create: {e}")))?;
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(|e| self.fail(format!("temp file: {e}")))?;
        file.write_all(&bytes)
            .map_err(|e| self.fail(format!("write: {e}")))?;
        file.persist(path)
            .map_err(|e| self.fail(format!("rename: {e}")))?;
        self.db
            .record_artifact(key, &sha256_hex(&bytes))
            .map_err(|e| self.fail(e.0))
    }
}
