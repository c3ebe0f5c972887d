//! Applying and rolling back migrations over one connection, recorded in sqlx's `_sqlx_migrations`.
//!
//! Each migration and its record commit together in one round trip (`BEGIN; <file>; INSERT; COMMIT`).
//! Commits are asynchronous except the last of a run, which flushes them all: a crash may lose the
//! newest migrations, never half of one. Runners serialise on sqlx's advisory lock for the database,
//! held by the session that applies the migrations (outside their transactions): a runner killed
//! mid-migration keeps the others out until the server has finished or rolled back what it sent,
//! so the next run never races the orphaned statement. Sessions ask the server (PostgreSQL 14+) to
//! notice a vanished client within a second and roll back its open transaction.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use postgres::Client;
use postgres::error::{ErrorPosition, SqlState};

use crate::conn::{Endpoint, PgError, describe_pg_error};
use crate::migrations::{
    Applied, Migration, NO_TRANSACTION, SqlxHazard, first_word_offset, line_col, own_transaction_control,
    split_statements,
};
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
/// travel with the login, so a no-op run pays no extra round trip for them. The date and time
/// settings are sqlx's (it sends them with every login): a file stores the same data whichever tool
/// applies it, whatever the server's, the database's or the developer's time zone and date style.
pub fn connect(endpoint: &Endpoint, db: &str) -> Result<Client> {
    endpoint.connect_watched(
        db,
        &format!("{SQLX_SESSION} -c standard_conforming_strings=on -c synchronous_commit=off"),
    )
}

/// What sqlx sets at login (`DateStyle`, `TimeZone`, `extra_float_digits`; `client_encoding` is UTF8
/// for both clients anyway), as server options.
const SQLX_SESSION: &str = "-c TimeZone=UTC -c DateStyle=ISO,MDY -c extra_float_digits=2";

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

/// Says once per run and file where sqlx and this tool part ways on a migration (see
/// [`SqlxHazard`]); the hazard, if any.
pub fn warn_of_sqlx_hazard(migration: &Migration) -> Option<SqlxHazard> {
    static WARNED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    let hazard = SqlxHazard::find(&migration.up, &migration.sql, migration.no_transaction)?;
    if WARNED.lock().unwrap_or_else(|e| e.into_inner()).insert(migration.up.clone()) {
        eprintln!("warning: {}", hazard.warning());
    }
    Some(hazard)
}

/// Applies one migration with its record. `durable` makes this commit wait for the disk, which
/// also flushes every asynchronous commit before it.
pub fn apply(client: &mut Client, migration: &Migration, durable: bool) -> Result<Duration> {
    let start = Instant::now();
    let record = format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ({}, {}, TRUE, '\\x{}'::bytea, \
         (extract(epoch FROM clock_timestamp() - transaction_timestamp()) * 1e9)::bigint)",
        migration.version,
        quote_literal(&migration.description),
        hex(&migration.checksum)
    );
    crate::migrations::refuse_unrunnable(&migration.up, &migration.sql, "migration")
        .context("migration refused; it is not recorded")?;
    let hazard = warn_of_sqlx_hazard(migration);
    let file = File { path: &migration.up, sql: &migration.sql, what: "migration" };
    if migration.no_transaction {
        run_one_by_one(client, &file)?;
        client.batch_execute(&record).map_err(PgError::from)?;
    } else if let Some(SqlxHazard::OwnTransaction { .. }) = hazard {
        run_as_sqlx(client, &file, &record)?;
    } else {
        let durability = if durable { "SET LOCAL synchronous_commit = on;\n" } else { "" };
        run_in_transaction(client, &file, &format!("BEGIN;\n{durability}"), &format!("{record};\nCOMMIT"))
            .context(format!(
                "migration {} failed; it was rolled back and is not recorded",
                migration.up.display()
            ))?;
    }
    Ok(start.elapsed())
}

/// Runs a down file and removes the record, in one transaction.
pub fn revert(client: &mut Client, down_path: &Path, down_sql: &str, version: i64) -> Result<Duration> {
    let start = Instant::now();
    crate::migrations::refuse_unrunnable(down_path, down_sql, "down migration")
        .context("rollback refused; nothing was changed")?;
    let forget = format!("DELETE FROM _sqlx_migrations WHERE version = {version}");
    let file = File { path: down_path, sql: down_sql, what: "rollback with" };
    if down_sql.starts_with(crate::migrations::NO_TRANSACTION) {
        run_one_by_one(client, &file)?;
        client.batch_execute(&forget).map_err(PgError::from)?;
    } else if own_transaction_control(down_sql).is_some() {
        run_as_sqlx(client, &file, &forget)?;
    } else {
        run_in_transaction(
            client,
            &file,
            "BEGIN;\nSET LOCAL synchronous_commit = on;\n",
            &format!("{forget};\nCOMMIT"),
        )
        .context(format!(
            "rollback with {} failed; it was undone and the migration stays applied",
            down_path.display()
        ))?;
    }
    Ok(start.elapsed())
}

/// A file to run, and how it is named in errors.
struct File<'a> {
    path: &'a Path,
    sql: &'a str,
    what: &'a str,
}

/// Runs a file's statements one by one in a transaction, `head` sent with the first and `tail`
/// (the record, COMMIT) with the last: one round trip for a one-statement file, and a failure is
/// located at its statement without running anything twice. The server runs them exactly as it
/// runs the file sent whole inside BEGIN ... COMMIT (sqlx's way), statement by statement.
fn run_in_transaction(client: &mut Client, file: &File, head: &str, tail: &str) -> Result<()> {
    let statements = split_statements(file.sql);
    if statements.is_empty() {
        return client.batch_execute(&format!("{head}{tail}")).map_err(|e| anyhow!(PgError::from(e)));
    }
    let last = statements.len() - 1;
    for (index, (offset, statement)) in statements.iter().enumerate() {
        let first = if index == 0 { head } else { "" };
        let sent: Cow<str> = match (first.is_empty(), index == last) {
            (_, true) => format!("{first}{statement}\n;{tail}").into(),
            (false, false) => format!("{first}{statement}").into(),
            (true, false) => Cow::Borrowed(statement),
        };
        if let Err(error) = client.batch_execute(&sent) {
            if crate::conn::connection_lost(&error) {
                return Err(PgError::from(error)).context(format!(
                    "the connection to the server was lost while {} ran: it commits together with its \
                     record, so it is applied whole or not at all",
                    file.path.display()
                ));
            }
            let _ = client.batch_execute("ROLLBACK");
            let at = Statement { offset: *offset, text: statement, sent_before: first.chars().count() };
            let rendered = render_statement_error(&error, file, &at);
            return Err(anyhow!(with_major_hint(client, rendered, statement)));
        }
    }
    Ok(())
}

/// A file with its own BEGIN/COMMIT, run the way sqlx runs it: BEGIN, the file as one query, the
/// record, COMMIT (here in one round trip; what follows the file's COMMIT commits with the record).
/// Durable, since the file's COMMIT ends the transaction a `SET LOCAL` would cover.
fn run_as_sqlx(client: &mut Client, file: &File, record: &str) -> Result<()> {
    const HEAD: &str = "SET synchronous_commit = on;\nBEGIN;\n";
    let ran = client.batch_execute(&format!("{HEAD}{}\n;{record};\nCOMMIT", file.sql));
    // Back to the session's setting (given at login); ROLLBACK ends what a failure left open.
    let _ = client.batch_execute("ROLLBACK; RESET synchronous_commit");
    let Err(error) = ran else { return Ok(()) };
    let located = render_error(&error, file.path, file.sql, HEAD.chars().count());
    let located = with_major_hint(client, located, file.sql);
    let (byte, words) = own_transaction_control(file.sql).unwrap_or_default();
    let (line, _) = line_col(file.sql, file.sql[..byte].chars().count() + 1);
    Err(anyhow!(located)).context(format!(
        "{} {} failed. It controls its own transaction (`{words}` on line {line}), so it ran as sqlx runs it: what ran \
         before its COMMIT may have stayed applied, and nothing was recorded. Check the database \
         (`cargo xtask connect`), then fix it by hand or start afresh (`cargo xtask wipe`, then \
         `cargo xtask setup`)",
        file.what,
        file.path.display()
    ))
}

/// Runs a whole file (a declared schema, a generated migration) in one transaction, reporting a
/// failure at its file, line and column. Nothing is recorded.
pub fn run_file(client: &mut Client, path: &Path, sql: &str) -> Result<()> {
    let prefix = "BEGIN;\n";
    if let Err(error) = client.batch_execute(&format!("{prefix}{sql}\n;COMMIT")) {
        let _ = client.batch_execute("ROLLBACK");
        let located = locate(client, &[], &error, path, sql, prefix.chars().count());
        return Err(anyhow!(with_major_hint(client, located, sql)));
    }
    Ok(())
}

/// A `-- no-transaction` file, each statement on its own, since CREATE INDEX CONCURRENTLY refuses
/// to run in any transaction block, including the implicit one of a multi-statement query.
fn run_one_by_one(client: &mut Client, file: &File) -> Result<()> {
    for (offset, statement) in split_statements(file.sql) {
        if let Err(error) = client.batch_execute(statement) {
            let rendered =
                render_statement_error(&error, file, &Statement { offset, text: statement, sent_before: 0 });
            return Err(anyhow!(with_major_hint(client, rendered, statement))).context(format!(
                "{} {} (-- no-transaction) failed; statements before the failing one stay applied \
                 and the record is unchanged: undo them by hand or make the file safe to re-run",
                file.what,
                file.path.display()
            ));
        }
    }
    Ok(())
}

/// A statement as sent: where it starts in its file (in characters) and how many characters of our
/// own went before it in the same query.
struct Statement<'a> {
    offset: usize,
    text: &'a str,
    sent_before: usize,
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

/// Renders a failure of `sql` (sent whole, after `prefix_chars` characters of our own) at its
/// file, line and column, for the files sent in one piece for speed (seeds, a declared schema),
/// where a failure is rare and nothing is recorded. Errors found only at run time (a violated
/// constraint, say) carry no position: then the file is replayed statement by statement, after
/// `prelude`, in a transaction that is rolled back, to find the statement that fails. Migrations
/// are never replayed: they are sent statement by statement ([`run_in_transaction`]).
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
        Some((offset, text, replayed)) => {
            let file = File { path, sql, what: "" };
            render_statement_error(&replayed, &file, &Statement { offset, text, sent_before: 0 })
        }
        None => render_at(error, path, sql, None),
    }
}

/// An error of one statement: at the server's position within it, else at the statement's first
/// word (after any comments). A statement that refuses a transaction block, in a file whose
/// `-- no-transaction` is not its first line, says where the directive must go.
fn render_statement_error(error: &postgres::Error, file: &File, at: &Statement) -> String {
    let position = match error.as_db_error().and_then(|db| db.position()) {
        Some(ErrorPosition::Original(p)) => (*p as usize).checked_sub(at.sent_before).map(|p| p + at.offset),
        _ => None,
    };
    let lead = first_word_offset(at.text);
    let start = at.offset + at.text[..lead].chars().count() + 1;
    let mut text = render_at(error, file.path, file.sql, position.or(Some(start)));
    if error.code() == Some(&SqlState::ACTIVE_SQL_TRANSACTION)
        && let Some(line) = misplaced_directive(file.sql)
    {
        write!(
            text,
            "\nHINT: `{NO_TRANSACTION}` is on line {line}, but it counts only as the very first line of the \
             file (as for sqlx): move it to line 1 to run this file outside a transaction"
        )
        .unwrap();
    }
    text
}

/// `rendered`, followed by what `sql` uses that the server's major lacks, when it does.
fn with_major_hint(client: &mut Client, rendered: String, sql: &str) -> String {
    match crate::conn::server_major(client).ok().and_then(|major| crate::features::newer_than(major, sql)) {
        Some(hint) => format!("{rendered}\nHINT: {hint}"),
        None => rendered,
    }
}

/// The line of a `-- no-transaction` that is not the file's first line (so has no effect).
fn misplaced_directive(sql: &str) -> Option<usize> {
    if sql.starts_with(NO_TRANSACTION) {
        return None;
    }
    sql.lines().position(|line| line.trim_start().starts_with(NO_TRANSACTION)).map(|index| index + 1)
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
