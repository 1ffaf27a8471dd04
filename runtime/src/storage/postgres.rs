//! The shared backend: a PostgreSQL database several Airlock nodes use at once.
//! (Being written: see issue 12.)

use super::*;

/// [`Storage`] on PostgreSQL.
pub(crate) struct PostgresStorage {}

impl PostgresStorage {
    /// Connect to `url` and apply migrations.
    fn connect_blocking(url: &str) -> Result<PostgresStorage, crate::Error> {
        Err(crate::Error::Database {
            database: redact_password(url),
            message: "the PostgreSQL backend is not built yet".into(),
        })
    }
}

/// Connect to `url`, apply migrations, and return the storage.
pub(crate) fn open_blocking(url: &str) -> Result<std::sync::Arc<dyn Storage>, crate::Error> {
    match PostgresStorage::connect_blocking(url) {
        Ok(PostgresStorage {}) => unreachable!(),
        Err(error) => Err(error),
    }
}
