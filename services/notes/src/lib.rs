//! Notes: short texts owned by an account, with full-text search, over the `notes` database.
//!
//! The service migrates its own database at start-up with `sqlx::migrate!` over migrations/notes, the
//! folder `cargo xtask` migrates too: both record in `_sqlx_migrations`, so after `cargo xtask setup` the
//! start-up run finds nothing to do.

use std::fmt;

pub mod views;

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

/// The migrations in migrations/notes, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/notes");

/// A note. `account_id` is an id in the accounts database, which this service cannot see.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Note {
    pub id: i64,
    pub account_id: i64,
    pub title: String,
    pub body: String,
}

/// What can go wrong.
#[derive(Debug)]
pub enum Error {
    /// A note needs a title.
    EmptyTitle,
    /// Bringing the database up to date at start-up failed.
    Migrate(MigrateError),
    /// Connecting or querying failed.
    Database(sqlx::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::EmptyTitle => f.write_str("a note needs a title"),
            Error::Migrate(err) => write!(f, "migrate the notes database: {err}"),
            Error::Database(err) => write!(f, "notes database: {err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::EmptyTitle => None,
            Error::Migrate(err) => Some(err),
            Error::Database(err) => Some(err),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Error {
        Error::Database(err)
    }
}

/// A pool of connections to the notes database.
#[derive(Clone)]
pub struct Notes {
    pool: PgPool,
}

impl Notes {
    /// Connects to the database at `url` and applies any pending migration from migrations/notes.
    pub async fn connect(url: &str) -> Result<Notes, Error> {
        let pool = PgPool::connect(url).await?;
        MIGRATOR.run(&pool).await.map_err(Error::Migrate)?;
        Ok(Notes { pool })
    }

    /// Writes a new note for `account_id`.
    pub async fn create(&self, account_id: i64, title: &str, body: &str) -> Result<Note, Error> {
        let title = title.trim();
        if title.is_empty() {
            return Err(Error::EmptyTitle);
        }
        let note = sqlx::query_as(
            "INSERT INTO notes (account_id, title, body) VALUES ($1, $2, $3) \
             RETURNING id, account_id, title, body",
        )
        .bind(account_id)
        .bind(title)
        .bind(body)
        .fetch_one(&self.pool)
        .await?;
        Ok(note)
    }

    /// The account's notes, newest first.
    pub async fn list(&self, account_id: i64) -> Result<Vec<Note>, Error> {
        let query = sqlx::query_as(
            "SELECT id, account_id, title, body FROM notes WHERE account_id = $1 ORDER BY id DESC",
        );
        Ok(query.bind(account_id).fetch_all(&self.pool).await?)
    }

    /// The account's notes matching `query`, best match first. `query` is in web search syntax
    /// (`coffee -decaf`, `"exact phrase"`, `tea or coffee`), stemmed as English.
    pub async fn search(&self, account_id: i64, query: &str) -> Result<Vec<Note>, Error> {
        let notes = sqlx::query_as(
            "SELECT id, account_id, title, body \
             FROM notes, websearch_to_tsquery('english', $2) AS query \
             WHERE account_id = $1 AND search @@ query \
             ORDER BY ts_rank(search, query) DESC, id DESC",
        );
        Ok(notes.bind(account_id).bind(query).fetch_all(&self.pool).await?)
    }

    /// Deletes the account's note `note_id`; false when the account has no such note.
    pub async fn delete(&self, account_id: i64, note_id: i64) -> Result<bool, Error> {
        let result = sqlx::query("DELETE FROM notes WHERE account_id = $1 AND id = $2")
            .bind(account_id)
            .bind(note_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }
}
