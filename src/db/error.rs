//! [`DbError`], the one error the database facade returns. Inside `db`, query functions
//! return sea-orm's `DbErr` (they compose inside transactions); callers outside see only
//! this type, so that sea-orm stays an implementation detail of `db`.

use sea_orm::DbErr;

/// A database failure: the database did not answer, refused a statement, or returned
/// what forgehand cannot read. Callers log it and answer "try again" (HTTP 503, a retry).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(#[from] DbErr);

impl DbError {
    /// An error forgehand raises itself, with `message`.
    pub(crate) fn custom(message: impl Into<String>) -> DbError {
        DbError(DbErr::Custom(message.into()))
    }
}
