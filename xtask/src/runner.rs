//! Applying and rolling back migrations over one connection, recorded in sqlx's `_sqlx_migrations`.
//!
//! Each migration and its record commit together in one round trip (`BEGIN; <file>; INSERT; COMMIT`).
//! Commits are asynchronous except the last of a run, which flushes them all: a crash may lose the
//! newest migrations, never half of one. Runners serialise on sqlx's advisory lock for the database,
//! held by the session that applies the migrations (outside their transactions): a runner killed
//! mid-migration keeps the others out until the server has finished or rolled back what it sent,
//! so the next run never races the orphaned statement. Sessions ask the server (PostgreSQL 14+) to
//! notice a vanished client within a second and roll back its open transaction.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use postgres::Client;
use postgres::error::{ErrorPosition, SqlState};

use crate::conn::{Endpoint, PgError, describe_pg_error};
use crate::migrations::{Applied, Migration, line_col, split_statements};
use crate::naming::{hex, quote_literal};

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)";

/// Opens a work connection to a branch database, set up for applying migrations. The settings
/// travel with the login, so a no-op run pays no extra round trip for them.
pub fn connect(endpoint: &Endpoint, db: &str) -> Result<Client> {
    endpoint.connect_watched(db, "-c standard_conforming_strings=on -c synchronous_commit=off")
}

/// The recorded migrations; none when the table does not exist yet.
pub fn applied(client: &mut Client) -> Result<Vec<Applied>> {
    let rows = match client.query(
        "SELECT version, description, checksum, success, \
                to_char(installed_on AT TIME ZONE 'utc', 'YYYY-MM-DD HH24:MI:SS') \
         FROM _sqlx_migrations ORDER BY version",
        &[],
    ) {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(Vec::new()),
        Err(e) => return Err(PgError::from(e)).context("read _sqlx_migrations"),
    };
    Ok(rows
        .iter()
        .map(|row| Applied {
            version: row.get(0),
            description: row.get(1),
            checksum: row.get(2),
            success: row.get(3),
            installed_on: row.get(4),
        })
        .collect())
}

pub fn ensure_table(client: &mut Client) -> Result<()> {
    client.batch_execute(CREATE_TABLE).map_err(PgError::from).context("create _sqlx_migrations")
}

/// Applies one migration with its record. `durable` makes this commit wait for the disk, which
/// also flushes every asynchronous commit before it.
pub fn apply(client: &mut Client, migration: &Migration, durable: bool) -> Result<Duration> {
    let start = Instant::now();
    let record = format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ({}, {}, TRUE, '\\x{}'::bytea, \
         (extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1e9)::bigint)",
        migration.version,
        quote_literal(&migration.description),
        hex(&migration.checksum)
    );
    crate::migrations::refuse_unrunnable(
        &migration.up,
        &migration.sql,
        !migration.no_transaction,
        "migration",
    )
    .context("migration refused; it is not recorded")?;
    if migration.no_transaction {
        run_statements_one_by_one(client, migration)?;
        client.batch_execute(&record).map_err(PgError::from)?;
        return Ok(start.elapsed());
    }
    let durability = if durable { "SET LOCAL synchronous_commit = on;\n" } else { "" };
    let prefix = format!("BEGIN;\n{durability}");
    let query = format!("{prefix}{}\n;{record};\nCOMMIT", migration.sql);
    if let Err(error) = client.batch_execute(&query) {
        if crate::conn::connection_lost(&error) {
            return Err(PgError::from(error)).context(format!(
                "the connection to the server was lost while migration {} ran: it commits together with \
                 its record, so it is applied whole or not at all",
                migration.up.display()
            ));
        }
        let _ = client.batch_execute("ROLLBACK");
        let rendered = locate(client, &[], &error, &migration.up, &migration.sql, prefix.chars().count());
        return Err(anyhow!(rendered)).context(format!(
            "migration {} failed; it was rolled back and is not recorded",
            migration.up.display()
        ));
    }
    Ok(start.elapsed())
}

/// Runs a down file and removes the record, in one transaction.
pub fn revert(client: &mut Client, down_path: &Path, down_sql: &str, version: i64) -> Result<Duration> {
    let start = Instant::now();
    let no_transaction = down_sql.starts_with(crate::migrations::NO_TRANSACTION);
    crate::migrations::refuse_unrunnable(down_path, down_sql, !no_transaction, "down migration")
        .context("rollback refused; nothing was changed")?;
    if no_transaction {
        run_one_by_one(client, down_path, down_sql, "rollback with")?;
        let forget = format!("DELETE FROM _sqlx_migrations WHERE version = {version}");
        client.batch_execute(&forget).map_err(PgError::from)?;
        return Ok(start.elapsed());
    }
    let prefix = "BEGIN;\nSET LOCAL synchronous_commit = on;\n";
    let query =
        format!("{prefix}{down_sql}\n;DELETE FROM _sqlx_migrations WHERE version = {version};\nCOMMIT");
    if let Err(error) = client.batch_execute(&query) {
        if crate::conn::connection_lost(&error) {
            return Err(PgError::from(error)).context(format!(
                "the connection to the server was lost while {} ran: it commits together with the \
                 removal of its record, so it is rolled back whole or not at all",
                down_path.display()
            ));
        }
        let _ = client.batch_execute("ROLLBACK");
        let rendered = locate(client, &[], &error, down_path, down_sql, prefix.chars().count());
        return Err(anyhow!(rendered))
            .context(format!("rollback with {} failed; nothing was changed", down_path.display()));
    }
    Ok(start.elapsed())
}

/// Runs a whole file (a declared schema, a generated migration) in one transaction, reporting a
/// failure at its file, line and column. Nothing is recorded.
pub fn run_file(client: &mut Client, path: &Path, sql: &str) -> Result<()> {
    let prefix = "BEGIN;\n";
    if let Err(error) = client.batch_execute(&format!("{prefix}{sql}\n;COMMIT")) {
        let _ = client.batch_execute("ROLLBACK");
        return Err(anyhow!(locate(client, &[], &error, path, sql, prefix.chars().count())));
    }
    Ok(())
}

/// `-- no-transaction` files: each statement on its own, since CREATE INDEX CONCURRENTLY refuses to
/// run in any transaction block, including the implicit one of a multi-statement query.
fn run_statements_one_by_one(client: &mut Client, migration: &Migration) -> Result<()> {
    run_one_by_one(client, &migration.up, &migration.sql, "migration")
}

/// A `-- no-transaction` file, each statement on its own (`what` names it in the error).
fn run_one_by_one(client: &mut Client, path: &Path, sql: &str, what: &str) -> Result<()> {
    for (offset, statement) in split_statements(sql) {
        if let Err(error) = client.batch_execute(statement) {
            let rendered = render_statement_error(&error, path, sql, offset, statement);
            return Err(anyhow!(rendered)).context(format!(
                "{what} {} (-- no-transaction) failed; statements before the failing one stay applied \
                 and the record is unchanged: undo them by hand or make the file safe to re-run",
                path.display()
            ));
        }
    }
    Ok(())
}

/// `file:line:col: ERROR: message`, the offending line with a caret, then DETAIL and HINT.
/// `prefix_chars` is how many characters were sent before the file's text.
fn render_error(error: &postgres::Error, path: &Path, sql: &str, prefix_chars: usize) -> String {
    let position = match error.as_db_error().and_then(|db| db.position()) {
        Some(ErrorPosition::Original(p)) => (*p as usize).checked_sub(prefix_chars),
        _ => None,
    };
    render_at(error, path, sql, position)
}

fn render_error_at(error: &postgres::Error, path: &Path, sql: &str, offset_chars: usize) -> String {
    let position = match error.as_db_error().and_then(|db| db.position()) {
        Some(ErrorPosition::Original(p)) => Some(*p as usize + offset_chars),
        _ => None,
    };
    render_at(error, path, sql, position)
}

fn render_at(error: &postgres::Error, path: &Path, sql: &str, position: Option<usize>) -> String {
    let described = describe_pg_error(error);
    let Some(position) = position.filter(|p| *p >= 1 && *p <= sql.chars().count() + 1) else {
        return format!("{}: {described}", path.display());
    };
    let (line, col) = line_col(sql, position);
    let mut text = String::new();
    let (first, rest) = described.split_once('\n').unwrap_or((&described, ""));
    writeln!(text, "{}:{line}:{col}: {first}", path.display()).unwrap();
    if let Some(source_line) = sql.lines().nth(line - 1) {
        let gutter = line.to_string();
        writeln!(text, "{gutter} | {source_line}").unwrap();
        write!(text, "{} | {}^", " ".repeat(gutter.len()), " ".repeat(col - 1)).unwrap();
    }
    if !rest.is_empty() {
        write!(text, "\n{rest}").unwrap();
    }
    text
}

/// Renders a failure of `sql` (sent after `prefix_chars` characters of our own) at its file, line
/// and column. Errors found only at run time (a violated constraint, say) carry no position: then
/// the file is replayed statement by statement, after `prelude`, in a transaction that is rolled
/// back, to find the statement that fails.
pub fn locate(
    client: &mut Client,
    prelude: &[&str],
    error: &postgres::Error,
    path: &Path,
    sql: &str,
    prefix_chars: usize,
) -> String {
    if has_position(error) {
        return render_error(error, path, sql, prefix_chars);
    }
    if crate::conn::connection_lost(error) {
        return render_at(error, path, sql, None);
    }
    match replay(client, prelude, sql) {
        Some((offset, statement, replayed)) => {
            render_statement_error(&replayed, path, sql, offset, statement)
        }
        None => render_at(error, path, sql, None),
    }
}

/// An error of one statement starting at character `offset` of the file: at the server's position
/// within it, else at the statement's first character.
fn render_statement_error(
    error: &postgres::Error,
    path: &Path,
    sql: &str,
    offset: usize,
    statement: &str,
) -> String {
    if has_position(error) {
        return render_error_at(error, path, sql, offset);
    }
    let lead = statement.chars().take_while(|c| c.is_whitespace()).count();
    render_at(error, path, sql, Some(offset + lead + 1))
}

fn has_position(error: &postgres::Error) -> bool {
    matches!(error.as_db_error().and_then(|db| db.position()), Some(ErrorPosition::Original(_)))
}

fn replay<'a>(
    client: &mut Client,
    prelude: &[&str],
    sql: &'a str,
) -> Option<(usize, &'a str, postgres::Error)> {
    client.batch_execute("BEGIN").ok()?;
    let found = (|| {
        for earlier in prelude {
            client.batch_execute(earlier).ok()?;
        }
        for (offset, statement) in split_statements(sql) {
            if let Err(error) = client.batch_execute(statement) {
                return Some((offset, statement, error));
            }
        }
        None
    })();
    let _ = client.batch_execute("ROLLBACK");
    found
}

/// sqlx's lock key for a database, so that this tool and sqlx-based services serialise together.
pub fn lock_key(database: &str) -> i64 {
    0x3d32_ad9e * i64::from(crc32(database.as_bytes()))
}

/// CRC-32/ISO-HDLC (the zlib CRC), bit by bit: a handful of bytes per run does not need a table.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Takes the migration lock on `client`'s session (see [`crate::locks`]). It is held until the
/// session ends.
pub fn lock(client: &mut Client, database: &str, timeout: Duration) -> Result<()> {
    let what = format!("the migration lock on {database}");
    crate::locks::acquire(
        client,
        crate::locks::Key::One(lock_key(database)),
        crate::locks::Scope::Session,
        &what,
        timeout,
    )
}

/// A SQL string literal; the session runs with standard_conforming_strings on.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_key_matches_sqlx() {
        // crc32("123456789") is the CRC-32/ISO-HDLC check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(lock_key("postgres"), 0x3d32_ad9e * i64::from(crc32(b"postgres")));
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
