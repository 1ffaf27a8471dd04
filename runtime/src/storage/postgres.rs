//! The shared backend: a PostgreSQL database several Airlock nodes use at once.
//! (Being written: see issue 12.)

use super::*;

/// [`Storage`] on PostgreSQL.
pub struct PostgresStorage {}

impl PostgresStorage {
    /// Connect to `url` and apply migrations.
    pub(crate) async fn connect(url: &str) -> Result<PostgresStorage, crate::Error> {
        Err(crate::Error::Database {
            database: redact_password(url),
            message: "the PostgreSQL backend is not built yet".into(),
        })
    }
}
