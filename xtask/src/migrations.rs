//! Migration files and the plan over them: discovery, parsing, and what to apply (pure; no database).
//!
//! Layout (sqlx's): `<version>_<slug>.up.sql` with an optional `<version>_<slug>.down.sql`, or
//! `<version>_<slug>.sql` (up only). Checksum = SHA-384 of the up file's bytes, as sqlx computes it, so
//! that `sqlx::migrate!()` and sqlx-cli see exactly the state this tool writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha384};

/// A first line that makes a file run outside a transaction (for CREATE INDEX CONCURRENTLY).
pub const NO_TRANSACTION: &str = "-- no-transaction";

#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub description: String,
    /// Repository-relative path of the up file.
    pub up: PathBuf,
    pub down: Option<PathBuf>,
    pub sql: String,
    pub checksum: Vec<u8>,
    pub no_transaction: bool,
}

/// A row of `_sqlx_migrations`.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: i64,
    pub description: String,
    pub checksum: Vec<u8>,
    pub success: bool,
    pub installed_on: String,
}

enum Kind {
    Up,
    Down,
    Simple,
}

/// Reads every migration in `dir` (repository-relative names are built from `root`). A missing
/// directory means no migrations.
pub fn discover(root: &Path, dir: &Path) -> Result<Vec<Migration>> {
    let names = sql_files(root, dir)?;
    let mut ups: BTreeMap<i64, (String, String)> = BTreeMap::new();
    let mut downs: BTreeMap<i64, (String, String)> = BTreeMap::new();
    for name in &names {
        let Some(parsed) = parse_name(name) else { continue };
        let (version, description, kind) = parsed.with_context(|| format!("{}", dir.join(name).display()))?;
        let slot = match kind {
            Kind::Up | Kind::Simple => ups.get(&version).map(|(n, _)| n.clone()),
            Kind::Down => downs.get(&version).map(|(n, _)| n.clone()),
        };
        if let Some(other) = slot {
            bail!(
                "{} and {} share version {version}: each migration needs its own version \
                 (rename one; `cargo xtask prepare` picks a fresh one)",
                dir.join(&other).display(),
                dir.join(name).display()
            );
        }
        match kind {
            Kind::Up | Kind::Simple => {
                ups.insert(version, (name.clone(), description));
            }
            Kind::Down => {
                downs.insert(version, (name.clone(), description));
            }
        }
    }
    let mut migrations = Vec::with_capacity(ups.len());
    // A plain `<v>_a.sql` beside `<v>_a.down.sql` is a pair too: sqlx runs one and reverts with the other.
    for (version, (down_name, _)) in &downs {
        match ups.get(version) {
            Some(_) => {}
            None => bail!(
                "{} is a down migration without an up: add `{}` or remove it",
                dir.join(down_name).display(),
                down_name.replace(".down.sql", ".up.sql")
            ),
        }
    }
    let ups: Vec<(i64, String, String)> = ups.into_iter().map(|(v, (name, desc))| (v, name, desc)).collect();
    let texts = read_all(root, dir, &ups)?;
    for ((version, name, description), sql) in ups.into_iter().zip(texts) {
        migrations.push(Migration {
            version,
            description,
            checksum: Sha384::digest(sql.as_bytes()).to_vec(),
            no_transaction: sql.starts_with(NO_TRANSACTION),
            sql,
            down: downs.get(&version).map(|(down, _)| dir.join(down)),
            up: dir.join(name),
        });
    }
    Ok(migrations)
}

/// The names of the `.sql` files in `dir`, sorted; none when the directory does not exist.
pub fn sql_files(root: &Path, dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(root.join(dir)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sql") {
            check_is_file(&entry, &dir.join(&name))?;
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Reads the up files on a few threads: a no-op `migrate` over a thousand files is mostly this.
fn read_all(root: &Path, dir: &Path, ups: &[(i64, String, String)]) -> Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    let chunk = ups.len().div_ceil(threads).max(64);
    std::thread::scope(|scope| {
        let workers: Vec<_> = ups
            .chunks(chunk)
            .map(|part| {
                scope
                    .spawn(move || part.iter().map(|(_, name, _)| read_text(root, &dir.join(name))).collect())
            })
            .collect();
        let mut texts = Vec::with_capacity(ups.len());
        for worker in workers {
            let part: Result<Vec<String>> = worker.join().expect("a reader thread panicked");
            texts.extend(part?);
        }
        Ok(texts)
    })
}

pub fn read_text(root: &Path, path: &Path) -> Result<String> {
    let bytes = std::fs::read(root.join(path)).with_context(|| format!("read {}", path.display()))?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text: save it as UTF-8", path.display()))
}

/// Refuses a `.sql` entry that is not a regular file (through its links): a dangling or looping
/// link, a directory or a FIFO named like a migration would otherwise be skipped in silence, and
/// a migration that was meant to run would not. Follows links only when there is one (one stat
/// call per entry adds up over a thousand migrations on every no-op run).
fn check_is_file(entry: &std::fs::DirEntry, shown: &Path) -> Result<()> {
    let kind = entry.file_type().with_context(|| format!("read {}", shown.display()))?;
    if kind.is_file() {
        return Ok(());
    }
    if !kind.is_symlink() {
        bail!(
            "{} is not a file ({}): rename it so it does not end in `.sql`, or remove it",
            shown.display(),
            describe(kind)
        );
    }
    let target = std::fs::read_link(entry.path()).map_or_else(|_| "?".into(), |t| t.display().to_string());
    match std::fs::metadata(entry.path()) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => bail!(
            "{} is a symlink to {target}, which is not a file ({}): point it at the migration file, or remove it",
            shown.display(),
            describe(meta.file_type())
        ),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => bail!(
            "{} is a symlink to {target}, which loops back on itself: point it at the migration file, or remove it",
            shown.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} is a symlink to {target}, which does not exist: point it at the migration file, or remove it",
            shown.display()
        ),
        Err(e) => Err(e).with_context(|| format!("follow the symlink {} (to {target})", shown.display())),
    }
}

fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// The version of an up (or up-only) migration file's name; `None` for any other name.
pub fn up_version(name: &str) -> Option<i64> {
    match parse_name(name)? {
        Ok((version, _, Kind::Up | Kind::Simple)) => Some(version),
        _ => None,
    }
}

/// A file name read as sqlx reads it: `None` for a name sqlx ignores (no `_`, or nothing ending in
/// `.sql` after it: `notes.sql`, `schema.sql`), an error for a version that is no integer (sqlx
/// fails on the folder then). The version is any `i64` (`0`, `+2`); the description is what
/// precedes the suffix, `_` read as a space, dots and all, possibly empty.
fn parse_name(name: &str) -> Option<Result<(i64, String, Kind)>> {
    let (version, rest) = name.split_once('_')?;
    if !rest.ends_with(".sql") {
        return None;
    }
    let Ok(version) = version.parse::<i64>() else {
        return Some(Err(anyhow::anyhow!(
            "badly named migration: `{version}` is not a version number; expected \
             <VERSION>_<description>.up.sql, .down.sql or .sql, for example 20250101093000_add_users.up.sql"
        )));
    };
    let (suffix, kind) = if rest.ends_with(".up.sql") {
        (".up.sql", Kind::Up)
    } else if rest.ends_with(".down.sql") {
        (".down.sql", Kind::Down)
    } else {
        (".sql", Kind::Simple)
    };
    Some(Ok((version, rest.trim_end_matches(suffix).replace('_', " "), kind)))
}

/// Why a database and the files disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Applied, but its file changed since.
    Modified { version: i64, file: PathBuf },
    /// Applied, but no file has its version.
    Missing { version: i64, description: String },
    /// Pending, but older than the newest applied migration.
    OutOfOrder { version: i64, file: PathBuf, newest_applied: i64 },
    /// Recorded as failed (by sqlx); needs a hand fix.
    Dirty { version: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Applied,
    Pending,
    Modified,
    Missing,
    OutOfOrder,
    Dirty,
}

/// One line of `migrations` status.
#[derive(Debug, Clone)]
pub struct Entry {
    pub version: i64,
    pub description: String,
    pub state: State,
    pub file: Option<PathBuf>,
    pub installed_on: Option<String>,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Indexes into the files, in version order.
    pub pending: Vec<usize>,
    pub problems: Vec<Problem>,
    pub entries: Vec<Entry>,
}

/// Decides what to apply. Out-of-order files are pending when allowed, else problems.
pub fn plan(files: &[Migration], applied: &[Applied], allow_out_of_order: bool) -> Plan {
    let by_version: BTreeMap<i64, &Applied> = applied.iter().map(|a| (a.version, a)).collect();
    let newest_applied = applied.iter().map(|a| a.version).max();
    let mut plan = Plan::default();
    for (index, file) in files.iter().enumerate() {
        let entry_state = match by_version.get(&file.version) {
            Some(row) if !row.success => {
                plan.problems.push(Problem::Dirty { version: file.version });
                State::Dirty
            }
            Some(row) if row.checksum != file.checksum => {
                plan.problems.push(Problem::Modified { version: file.version, file: file.up.clone() });
                State::Modified
            }
            Some(_) => State::Applied,
            None => match newest_applied {
                Some(newest) if file.version < newest && !allow_out_of_order => {
                    plan.problems.push(Problem::OutOfOrder {
                        version: file.version,
                        file: file.up.clone(),
                        newest_applied: newest,
                    });
                    State::OutOfOrder
                }
                _ => {
                    plan.pending.push(index);
                    State::Pending
                }
            },
        };
        plan.entries.push(Entry {
            version: file.version,
            description: file.description.clone(),
            state: entry_state,
            file: Some(file.up.clone()),
            installed_on: by_version.get(&file.version).map(|a| a.installed_on.clone()),
        });
    }
    let file_versions: std::collections::HashSet<i64> = files.iter().map(|f| f.version).collect();
    for row in applied {
        if !file_versions.contains(&row.version) {
            if row.success {
                plan.problems
                    .push(Problem::Missing { version: row.version, description: row.description.clone() });
            } else {
                plan.problems.push(Problem::Dirty { version: row.version });
            }
            plan.entries.push(Entry {
                version: row.version,
                description: row.description.clone(),
                state: if row.success { State::Missing } else { State::Dirty },
                file: None,
                installed_on: Some(row.installed_on.clone()),
            });
        }
    }
    plan.entries.sort_by_key(|e| e.version);
    plan
}

/// Where the files are, so the advice can tell a file git has from one it does not: the workspace
/// root and the migrations folder (relative to it).
pub struct Checkout<'a> {
    pub root: &'a Path,
    pub dir: &'a Path,
}

/// The problems as one message that names every file and version and says the way out.
pub fn explain(problems: &[Problem], db_name: &str, checkout: Option<&Checkout>) -> String {
    let mut lines = vec![format!("the migrations of {db_name} do not match the files:")];
    let mut missing = Vec::new();
    let in_head = |path: &Path| checkout.and_then(|c| crate::git::in_head(c.root, path));
    for problem in problems {
        match problem {
            Problem::Modified { version, file } if in_head(file) == Some(false) => lines.push(format!(
                "  {}: applied as version {version}, but the file changed since, and git has no committed copy \
                 to restore. Applied migrations are never re-run: undo the edit by hand and put the change in a \
                 new migration, or, if no one else applied it, `cargo xtask wipe` then `cargo xtask setup` to \
                 apply it as it is now",
                file.display()
            )),
            Problem::Modified { version, file } => lines.push(format!(
                "  {}: applied as version {version}, but the file changed since. Applied migrations are \
                 never re-run: restore the file (git checkout -- {}) and put the change in a new migration",
                file.display(),
                file.display()
            )),
            Problem::Missing { version, description } => {
                let name = format!("{version}_{}.up.sql", description.replace(' ', "_"));
                match checkout.map(|c| c.dir.join(&name)) {
                    Some(path) if in_head(&path) == Some(true) => lines.push(format!(
                        "  {}: applied as version {version}, and deleted from this checkout although this branch's \
                         last commit has it: restore it (git checkout -- {}), or roll it back first and then \
                         delete it in a commit",
                        path.display(),
                        path.display()
                    )),
                    _ => missing.push(format!("{version} ({description})")),
                }
            }
            Problem::OutOfOrder { version, file, newest_applied } => lines.push(format!(
                "  {}: version {version} is pending but older than the newest applied one, {newest_applied} \
                 (merged from another branch?). Run with --allow-out-of-order to apply it anyway, or give it \
                 a newer version",
                file.display()
            )),
            Problem::Dirty { version } => lines.push(format!(
                "  version {version} is recorded as failed (success = false, written by another tool): fix \
                 the database by hand, then delete that row from _sqlx_migrations"
            )),
        }
    }
    if !missing.is_empty() {
        lines.push(format!(
            "  applied but not in this checkout: {}. They came from another branch. Either roll them back \
             while their files are reachable (check out the branch that has them, `cargo xtask rollback \
             --steps {}`, come back), or start this branch's database afresh: `cargo xtask wipe` then \
             `cargo xtask setup`",
            missing.join(", "),
            missing.len()
        ));
    }
    lines.join("\n")
}

/// Turns a server error position (1-based, in characters) into 1-based line and column.
pub fn line_col(sql: &str, position: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for c in sql.chars().take(position.saturating_sub(1)) {
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// Splits SQL into statements as the server splits a multi-statement query: at `;` outside quotes,
/// dollar quotes, comments and parentheses (a rule's `DO ALSO (...; ...)` actions), with each
/// `BEGIN ATOMIC ... END` function body kept whole. Each statement comes with its character offset
/// in `sql`. Statements are sent one by one, so a failure names its statement without a second run.
pub fn split_statements(sql: &str) -> Vec<(usize, &str)> {
    let mut pieces = Vec::new();
    // Character offsets are counted on from the previous statement: a big file with many
    // statements must not be counted from its start each time.
    let mut counted = (0, 0);
    let mut start = 0;
    let mut depth = 0usize;
    walk_top_level(sql, |i| {
        match sql.as_bytes()[i] {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b';' if depth == 0 => {
                push_statement(sql, start, i, &mut counted, &mut pieces);
                start = i + 1;
            }
            _ => {}
        }
        None::<()>
    });
    push_statement(sql, start, sql.len(), &mut counted, &mut pieces);
    join_atomic_bodies(sql, pieces)
}

/// Joins the pieces of a `CREATE FUNCTION ... BEGIN ATOMIC ...; ...; END` back into one statement.
fn join_atomic_bodies<'a>(sql: &'a str, pieces: Vec<(usize, &'a str)>) -> Vec<(usize, &'a str)> {
    let mut statements = Vec::with_capacity(pieces.len());
    let mut open: Option<(usize, usize)> = None;
    let mut depth = 0usize;
    for (offset, piece) in pieces {
        let begins_body = depth == 0 && first_words(piece).is_some_and(|(_, words)| words[0] == "CREATE");
        if depth > 0 || begins_body {
            depth = atomic_body_depth(&code_words(piece), depth);
        }
        let piece_start = piece.as_ptr() as usize - sql.as_ptr() as usize;
        let (offset, start) = open.unwrap_or((offset, piece_start));
        if depth > 0 {
            open = Some((offset, start));
            continue;
        }
        open = None;
        statements.push((offset, &sql[start..piece_start + piece.len()]));
    }
    if let Some((offset, start)) = open {
        statements.push((offset, &sql[start..]));
    }
    statements
}

/// Calls `visit` with the byte index of every byte of `sql` outside quotes, dollar quotes and
/// comments, until it returns something.
fn walk_top_level<T>(sql: &str, mut visit: impl FnMut(usize) -> Option<T>) -> Option<T> {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => i = skip_quoted(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| i + p + 1)
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'$' => {
                let next = skip_dollar_quoted(sql, i);
                if next == i + 1
                    && let Some(found) = visit(i)
                {
                    return Some(found);
                }
                i = next;
            }
            _ => {
                if let Some(found) = visit(i) {
                    return Some(found);
                }
                i += 1;
            }
        }
    }
    None
}

/// `file:line:col` of byte `byte` of `sql`.
fn position(path: &Path, sql: &str, byte: usize) -> String {
    let (line, col) = line_col(sql, sql[..byte].chars().count() + 1);
    format!("{}:{line}:{col}", path.display())
}

/// Refuses, before anything is sent, SQL that cannot run over a connection at all (sqlx fails on it
/// too): a psql meta-command (`\connect`, `\i`, ...: only psql knows them, and they would be syntax
/// errors half-way through) and a NUL byte (binary data: the protocol cannot carry it). The error
/// names file, line and column. `what` names the kind of file.
pub fn refuse_unrunnable(path: &Path, sql: &str, what: &str) -> Result<()> {
    if let Some(nul) = sql.find('\0') {
        bail!(
            "{}: the {what} contains a NUL byte (binary data?); it must be SQL text. Nothing was run",
            position(path, sql, nul)
        );
    }
    let meta = walk_top_level(sql, |i| (sql.as_bytes()[i] == b'\\').then_some(i));
    if let Some(i) = meta {
        let command: String = sql[i..].chars().take_while(|c| !c.is_whitespace()).collect();
        bail!(
            "{}: `{command}` is a psql meta-command, which only psql understands: the {what} is sent to \
             the server over a connection, not through psql. Remove it (a migration runs in the \
             database it belongs to: no \\connect; put SQL from other files into this one). Nothing was run",
            position(path, sql, i)
        );
    }
    Ok(())
}

/// A statement of the file's own that controls the transaction (BEGIN, COMMIT, ROLLBACK, END,
/// ABORT, START or PREPARE TRANSACTION; not SAVEPOINT or ROLLBACK TO, nor anything in a function
/// body or a string): its byte offset and words.
pub fn own_transaction_control(sql: &str) -> Option<(usize, String)> {
    for (offset, statement) in split_statements(sql) {
        let Some((lead, words)) = first_words(statement) else { continue };
        let controls = match words.as_slice() {
            [first, second, ..] if first == "ROLLBACK" && second == "TO" => false,
            [first, second, ..] if first == "PREPARE" && second == "TRANSACTION" => true,
            [first, second, ..] if first == "START" && second == "TRANSACTION" => true,
            [first, ..] => ["BEGIN", "COMMIT", "END", "ROLLBACK", "ABORT"].contains(&first.as_str()),
            [] => false,
        };
        if controls {
            let byte = sql.char_indices().nth(offset).map_or(sql.len(), |(b, _)| b) + lead;
            return Some((byte, words.join(" ")));
        }
    }
    None
}

/// Refuses transaction control in a file the tool runs in a transaction of its own that sqlx never
/// ran (a seed): a COMMIT would keep half of it when the rest fails, a ROLLBACK would undo it and
/// still let it be recorded.
pub fn refuse_own_transaction(path: &Path, sql: &str, what: &str) -> Result<()> {
    if let Some((byte, words)) = own_transaction_control(sql) {
        bail!(
            "{}: `{words}` controls the transaction, but the {what} already runs in a transaction of its \
             own, so that it applies whole or not at all: a COMMIT would keep half of it when the rest \
             fails, a ROLLBACK would undo it and still record it. Remove it (and any BEGIN). Nothing was run",
            position(path, sql, byte)
        );
    }
    Ok(())
}

/// Where a migration file that the tool runs would go wrong under sqlx, or sqlx's way of running it
/// loses what the tool otherwise guarantees. The tool still runs such a file (its checksum may
/// already be recorded in databases sqlx migrated), warns, and refuses it in new migrations
/// (pre-commit, ci).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlxHazard {
    /// Its own BEGIN/COMMIT in a transactional file: run as sqlx runs it, not atomic any more.
    OwnTransaction { at: String, words: String },
    /// A `-- no-transaction` file of several statements, one of which refuses any transaction block:
    /// sqlx sends the file as one query, which the server runs in an implicit transaction.
    NeedsOwnFile { at: String, words: String },
}

impl SqlxHazard {
    pub fn find(path: &Path, sql: &str, no_transaction: bool) -> Option<SqlxHazard> {
        if !no_transaction {
            let (byte, words) = own_transaction_control(sql)?;
            return Some(SqlxHazard::OwnTransaction { at: position(path, sql, byte), words });
        }
        let statements = split_statements(sql);
        if statements.len() < 2 {
            return None;
        }
        statements.iter().find_map(|(offset, statement)| {
            let words = outside_any_transaction(statement)?;
            let (lead, _) = first_words(statement)?;
            let byte = sql.char_indices().nth(*offset).map_or(sql.len(), |(b, _)| b) + lead;
            Some(SqlxHazard::NeedsOwnFile { at: position(path, sql, byte), words })
        })
    }

    /// What happens and what to do, for a warning.
    pub fn warning(&self) -> String {
        match self {
            SqlxHazard::OwnTransaction { at, words } => format!(
                "{at}: `{words}`: this migration controls its own transaction, so it is run the way sqlx \
                 runs it: its COMMIT also ends the transaction its record is written in, and if a later \
                 statement fails, what ran before that COMMIT stays applied without a record. A new \
                 migration must not do this (pre-commit and ci refuse it): remove BEGIN/COMMIT, the file \
                 already runs in one transaction with its record"
            ),
            SqlxHazard::NeedsOwnFile { at, words } => format!(
                "{at}: `{words}` cannot run in a transaction block, and sqlx (sqlx-cli, `sqlx::migrate!`) \
                 sends a `{NO_TRANSACTION}` file as one query, which the server runs in one: sqlx fails on \
                 this file, though this tool applies it statement by statement. Put `{words}` in a \
                 `{NO_TRANSACTION}` migration of its own, one statement per file (pre-commit and ci \
                 refuse new migrations like this one)"
            ),
        }
    }
}

/// The words naming a statement that PostgreSQL refuses to run inside any transaction block.
fn outside_any_transaction(statement: &str) -> Option<String> {
    let words = code_words(statement);
    let word = |i: usize| words.get(i).map_or("", String::as_str);
    let refuses = match word(0) {
        "VACUUM" => true,
        "CREATE" | "DROP" => {
            ["DATABASE", "TABLESPACE"].contains(&word(1))
                || (word(1) == "INDEX" || word(2) == "INDEX") && words.iter().any(|w| w == "CONCURRENTLY")
                || word(1) == "SUBSCRIPTION"
        }
        "REINDEX" => ["DATABASE", "SYSTEM"].contains(&word(1)) || words.iter().any(|w| w == "CONCURRENTLY"),
        "ALTER" => {
            word(1) == "SYSTEM"
                || word(1) == "TABLE"
                    && words.iter().any(|w| w == "DETACH")
                    && words.iter().any(|w| w == "CONCURRENTLY")
        }
        "COMMIT" | "ROLLBACK" => word(1) == "PREPARED",
        "DISCARD" => word(1) == "ALL",
        _ => false,
    };
    refuses.then(|| words.iter().take(3).cloned().collect::<Vec<_>>().join(" "))
}

/// The depth of `BEGIN ATOMIC` bodies still open after a statement's words, given the depth before
/// it: CASE ... END inside a body nests; outside one, only BEGIN ATOMIC opens.
fn atomic_body_depth(words: &[String], mut depth: usize) -> usize {
    for (i, word) in words.iter().enumerate() {
        match word.as_str() {
            "BEGIN" if words.get(i + 1).is_some_and(|w| w == "ATOMIC") => depth += 1,
            "CASE" if depth > 0 => depth += 1,
            "END" if depth > 0 => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// The words of `statement` outside quotes and comments, upper-cased; an identifier with `_` and
/// digits is one word.
fn code_words(statement: &str) -> Vec<String> {
    let bytes = statement.as_bytes();
    let mut code = String::with_capacity(statement.len());
    let mut next = 0;
    walk_top_level(statement, |i| {
        if i != next {
            code.push(' ');
        }
        code.push(if bytes[i].is_ascii() { bytes[i] as char } else { ' ' });
        next = i + 1;
        None::<()>
    });
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The byte offset in `statement` of what follows its leading space and comments.
pub fn first_word_offset(statement: &str) -> usize {
    let bytes = statement.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes[i..].starts_with(b"--") {
            i = bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| i + p + 1);
        } else if bytes[i..].starts_with(b"/*") {
            i = skip_block_comment(bytes, i);
        } else {
            return i;
        }
    }
}

/// The byte offset of a statement's first word (after space and comments) and its first two
/// words, upper-cased; `None` when it has no word.
fn first_words(statement: &str) -> Option<(usize, Vec<String>)> {
    let i = first_word_offset(statement);
    let rest = &statement[i..];
    let words: Vec<String> = rest
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .take(2)
        .map(str::to_ascii_uppercase)
        .collect();
    let starts_with_word = rest.starts_with(|c: char| c.is_ascii_alphabetic());
    (starts_with_word && !words.is_empty()).then_some((i, words))
}

fn push_statement<'a>(
    sql: &'a str,
    start: usize,
    end: usize,
    (counted_bytes, counted_chars): &mut (usize, usize),
    out: &mut Vec<(usize, &'a str)>,
) {
    let text = &sql[start..end];
    if !only_comments_and_space(text) {
        *counted_chars += sql[*counted_bytes..start].chars().count();
        *counted_bytes = start;
        out.push((*counted_chars, text));
    }
}

fn only_comments_and_space(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with("--")
    })
}

fn skip_quoted(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        // E'...' strings allow backslash escapes; a backslash never ends a quote elsewhere either.
        if bytes[i] == b'\\' && quote == b'\'' && start > 0 && matches!(bytes[start - 1], b'E' | b'e') {
            i += 2;
            continue;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

fn skip_dollar_quoted(sql: &str, start: usize) -> usize {
    let rest = &sql[start + 1..];
    let tag_len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
    if !rest[tag_len..].starts_with('$') || rest[..tag_len].starts_with(|c: char| c.is_ascii_digit()) {
        return start + 1; // `$1` parameters and lone dollars
    }
    let tag = &sql[start..start + tag_len + 2];
    let body_start = start + tag.len();
    match sql[body_start..].find(tag) {
        Some(end) => body_start + end + tag.len(),
        None => sql.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(version: i64, sql: &str) -> Migration {
        Migration {
            version,
            description: format!("m{version}"),
            up: PathBuf::from(format!("migrations/{version}_m.up.sql")),
            down: None,
            sql: sql.into(),
            checksum: Sha384::digest(sql.as_bytes()).to_vec(),
            no_transaction: false,
        }
    }

    fn applied(version: i64, sql: &str) -> Applied {
        Applied {
            version,
            description: format!("m{version}"),
            checksum: Sha384::digest(sql.as_bytes()).to_vec(),
            success: true,
            installed_on: "2026-01-01".into(),
        }
    }

    #[test]
    fn names_parse_like_sqlx() {
        let parsed =
            |name: &str| parse_name(name).map(|r| r.map(|(v, d, _)| (v, d)).map_err(|e| e.to_string()));
        for (name, version, description) in [
            ("20250101093000_add_user_prefs.up.sql", 20250101093000, "add user prefs"),
            ("0_setup.sql", 0, "setup"),
            ("+2_plus.sql", 2, "plus"),
            ("-1_minus.sql", -1, "minus"),
            ("1_with.dots.v2.sql", 1, "with.dots.v2"),
            ("2_release_status_view.sql.up.sql", 2, "release status view.sql"),
            ("3_twice.up.sql.up.sql", 3, "twice"),
            ("1_.sql", 1, ""),
        ] {
            assert_eq!(parsed(name), Some(Ok((version, description.to_owned()))), "{name}");
        }
        assert!(matches!(parse_name("1_x.down.sql"), Some(Ok((1, _, Kind::Down)))));
        assert!(matches!(parse_name("2_x.sql"), Some(Ok((2, _, Kind::Simple)))));
        for ignored in ["notes.sql", "schema.sql", "1_x.sql.bak", "12.sql"] {
            assert!(parse_name(ignored).is_none(), "{ignored}");
        }
        for bad in ["x_y.sql", "add_users.sql", "_a.sql", "1.5_a.sql"] {
            assert!(matches!(parse_name(bad), Some(Err(_))), "{bad}");
        }
    }

    fn discover_files(names: &[&str]) -> Result<Vec<Migration>> {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("m")).unwrap();
        for name in names {
            std::fs::write(root.path().join("m").join(name), "select 1;").unwrap();
        }
        discover(root.path(), Path::new("m"))
    }

    #[test]
    fn discovery_pairs_ups_and_downs_and_rejects_the_rest() {
        let found = discover_files(&[
            "2_b.sql",
            "1_a.up.sql",
            "1_a.down.sql",
            "schema.sql",
            "notes.sql",
            "notes.txt",
            "3_c.sql",
            "3_c.down.sql",
        ])
        .unwrap();
        assert_eq!(found.iter().map(|m| m.version).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(found[2].down.as_deref(), Some(Path::new("m/3_c.down.sql")), "a plain up has its down");
        assert_eq!(found[0].down.as_deref(), Some(Path::new("m/1_a.down.sql")));
        assert!(found[1].down.is_none());
        for (names, needle) in [
            (&["1_a.up.sql", "1_b.up.sql"][..], "share version 1"),
            (&["1_a.down.sql"][..], "without an up"),
            (&["add_users.sql"][..], "m/add_users.sql"),
        ] {
            let error = format!("{:#}", discover_files(names).unwrap_err());
            assert!(error.contains(needle), "{names:?}: {error}");
        }
    }

    #[test]
    fn entries_named_like_migrations_that_are_no_files_are_refused() {
        use std::os::unix::fs::symlink;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("m");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("1_a.sql"), "select 1;").unwrap();
        symlink("1_a.sql", dir.join("2_linked.sql")).unwrap();
        assert_eq!(discover(root.path(), Path::new("m")).unwrap().len(), 2);
        let refused = |make: &dyn Fn(&Path), needle: &str| {
            make(&dir.join("3_bad.sql"));
            let error = format!("{:#}", discover(root.path(), Path::new("m")).unwrap_err());
            assert!(error.contains("m/3_bad.sql") && error.contains(needle), "{error}");
            let _ = std::fs::remove_file(dir.join("3_bad.sql"));
            let _ = std::fs::remove_dir(dir.join("3_bad.sql"));
        };
        refused(&|p| symlink("gone.sql", p).unwrap(), "symlink to gone.sql, which does not exist");
        refused(&|p| symlink("3_bad.sql", p).unwrap(), "symlink to 3_bad.sql, which loops");
        refused(&|p| std::fs::create_dir(p).unwrap(), "is not a file (a directory)");
        std::fs::create_dir(dir.join("sub")).unwrap();
        refused(&|p| symlink("sub", p).unwrap(), "symlink to sub, which is not a file (a directory)");
    }

    #[test]
    fn plan_finds_pending_modified_missing_out_of_order() {
        let files = [file(1, "a"), file(2, "b-edited"), file(3, "c"), file(5, "e")];
        let rows = [applied(2, "b"), applied(4, "d"), applied(1, "a")];
        let plan = plan(&files, &rows, false);
        assert_eq!(plan.pending, vec![3]);
        assert_eq!(
            plan.problems,
            vec![
                Problem::Modified { version: 2, file: files[1].up.clone() },
                Problem::OutOfOrder { version: 3, file: files[2].up.clone(), newest_applied: 4 },
                Problem::Missing { version: 4, description: "m4".into() },
            ]
        );
        let states: Vec<State> = plan.entries.iter().map(|e| e.state).collect();
        assert_eq!(
            states,
            [State::Applied, State::Modified, State::OutOfOrder, State::Missing, State::Pending]
        );
    }

    #[test]
    fn out_of_order_allowed_becomes_pending() {
        let files = [file(1, "a"), file(3, "c")];
        let plan = plan(&files, &[applied(3, "c")], true);
        assert_eq!(plan.pending, vec![0]);
        assert!(plan.problems.is_empty());
    }

    #[test]
    fn nothing_applied_everything_pending() {
        let files = [file(1, "a"), file(2, "b")];
        let plan = plan(&files, &[], false);
        assert_eq!(plan.pending, vec![0, 1]);
        assert!(plan.problems.is_empty());
    }

    #[test]
    fn failed_rows_are_dirty() {
        let mut row = applied(1, "a");
        row.success = false;
        let plan = plan(&[file(1, "a")], &[row], false);
        assert_eq!(plan.problems, vec![Problem::Dirty { version: 1 }]);
    }

    #[test]
    fn explanation_names_files_and_ways_out() {
        let text = explain(
            &[
                Problem::Missing { version: 7, description: "x".into() },
                Problem::Modified { version: 2, file: "migrations/2_b.up.sql".into() },
            ],
            "geney_x",
            None,
        );
        assert!(text.contains("migrations/2_b.up.sql"), "{text}");
        assert!(text.contains("7 (x)") && text.contains("rollback") && text.contains("wipe"), "{text}");
    }

    #[test]
    fn positions_become_lines_and_columns() {
        let sql = "create table a ();\n\n  selec 1;\néé x";
        assert_eq!(line_col(sql, 1), (1, 1));
        assert_eq!(line_col(sql, 23), (3, 3));
        assert_eq!(line_col(sql, 35), (4, 4));
    }

    #[test]
    fn unrunnable_sql_is_refused_with_file_line_and_column() {
        let path = Path::new("migrations/1_x.up.sql");
        for (sql, needle) in [
            ("create table a ();\n\\connect other\n", "1_x.up.sql:2:1: `\\connect` is a psql meta-command"),
            ("select 1;\n  \\i other.sql", "1_x.up.sql:2:3: `\\i`"),
            ("select 1;\nselect 'a\0b'", "1_x.up.sql:2:10: the migration contains a NUL byte"),
        ] {
            let message = format!("{:#}", refuse_unrunnable(path, sql, "migration").unwrap_err());
            assert!(message.contains(needle) && message.contains("Nothing was run"), "{sql:?}: {message}");
        }
        for sql in
            ["", "create table a (x text default '\\connect; COMMIT');", "select E'\\\\'; -- \\connect"]
        {
            assert!(refuse_unrunnable(path, sql, "migration").is_ok(), "{sql:?}");
        }
    }

    #[test]
    fn own_transaction_control_is_found_outside_bodies_and_strings() {
        let path = Path::new("migrations/1_x.up.sql");
        let found = |sql: &str| {
            own_transaction_control(sql)
                .map(|(byte, words)| format!("{}: {words}", position(path, sql, byte)))
        };
        for (sql, needle) in [
            ("create table a ();\nCOMMIT;\ncreate table b ();", "1_x.up.sql:2:1: COMMIT"),
            ("create table a ();\n  rollback;", "1_x.up.sql:2:3: ROLLBACK"),
            ("/* c */ begin;\ncreate table a ();\nend;", "1_x.up.sql:1:9: BEGIN"),
            ("select 1; -- x\nabort", "1_x.up.sql:2:1: ABORT"),
            ("start transaction", "START TRANSACTION"),
            ("prepare transaction 'x'", "PREPARE TRANSACTION"),
            // Not mistaken for a function body, so the COMMIT after them is seen.
            ("create table ba (begin_atomic int);\ncommit;", "1_x.up.sql:2:1: COMMIT"),
            ("create procedure p() language sql begin atomic end;\ncommit;", "1_x.up.sql:2:1: COMMIT"),
            ("create table t (x text default 'begin atomic');\ncommit;", "1_x.up.sql:2:1: COMMIT"),
            (
                "create function f() returns int language sql begin atomic select case when true then 1 end; end;\ncommit;",
                "1_x.up.sql:2:1: COMMIT",
            ),
        ] {
            let message = found(sql).unwrap_or_else(|| panic!("{sql:?} was not found"));
            assert!(message.contains(needle), "{sql:?}: {message}");
        }
        for sql in [
            "",
            "create table a (x text default 'COMMIT');",
            "select E'\\\\'; /* COMMIT; */ select $$\\x; commit;$$;",
            "savepoint s; select 1; rollback to savepoint s; release s;",
            "create procedure p() language plpgsql as $$ begin commit; end $$;",
            "create function f() returns int language sql begin atomic select 1; select 2; end;\nselect 1",
            "select 1 as commit_count; select x from t where begin_at < end_at",
            "create function d(begin_date date, end_date date) returns int language sql\n\
             begin atomic select end_date - begin_date; end;",
            "create function g() returns int language sql begin /* c */ atomic select 1; end;",
            "create function h(x int) returns int language sql begin atomic\n\
             select case when x > 0 then 1 else 0 end;\n select case x when 1 then 2 end; end;",
            "create rule r as on insert to t do also (insert into u values (1); commit_log(); );",
        ] {
            assert_eq!(found(sql), None, "{sql:?}");
        }
    }

    #[test]
    fn sqlx_hazards_are_found_with_their_position() {
        let path = Path::new("m/1_x.sql");
        let hazard = SqlxHazard::find(path, "begin;\ncreate table a ();\ncommit;\n", false).unwrap();
        assert_eq!(hazard, SqlxHazard::OwnTransaction { at: "m/1_x.sql:1:1".into(), words: "BEGIN".into() });
        let two = "-- no-transaction\ncreate index concurrently a_x on a (x);\n\
                   CREATE UNIQUE INDEX CONCURRENTLY a_y ON a (y);";
        let SqlxHazard::NeedsOwnFile { at, words } = SqlxHazard::find(path, two, true).unwrap() else {
            panic!("not a no-transaction hazard")
        };
        assert_eq!((at.as_str(), words.as_str()), ("m/1_x.sql:2:1", "CREATE INDEX CONCURRENTLY"));
        for (sql, no_transaction) in [
            ("-- no-transaction\ncreate index concurrently a_x on a (x);", true),
            ("-- no-transaction\ncreate table a (); insert into a default values;", true),
            ("-- no-transaction\nbegin; create table a (); commit;", true),
            ("create index a_x on a (x); select 'vacuum; create database x'", false),
        ] {
            assert_eq!(SqlxHazard::find(path, sql, no_transaction), None, "{sql:?}");
        }
        for sql in [
            "vacuum a; select 1",
            "select 1; alter system set work_mem = '1MB'",
            "drop index concurrently i; select 1",
        ] {
            assert!(SqlxHazard::find(path, sql, true).is_some(), "{sql:?}");
        }
    }

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let sql = "create table a (x text default ';');\n-- c; d\n/* e; /* f; */ g; */\n\
                   create function f() returns int as $body$ select 1; $body$ language sql;\n\
                   select $1; select E'\\';'; select \"a;b\" from t;\n-- trailing";
        let parts: Vec<&str> = split_statements(sql).into_iter().map(|(_, s)| s.trim()).collect();
        assert_eq!(parts.len(), 5, "{parts:#?}");
        assert!(parts[1].ends_with("language sql"), "{parts:#?}");
        let offsets: Vec<usize> = split_statements("a;\nb").into_iter().map(|(o, _)| o).collect();
        assert_eq!(offsets, [0, 2]);
        // As the server parses them: a rule's actions and an atomic body are one statement each.
        let whole = "create rule r as on insert to t do also (insert into u values (1); delete from v);\n\
                     create function f() returns int language sql\nbegin atomic select 1; select 2; end;\n\
                     select 3";
        let parts = split_statements(whole);
        assert_eq!(parts.len(), 3, "{parts:#?}");
        assert!(
            parts[1].1.trim().starts_with("create function") && parts[1].1.ends_with("end"),
            "{parts:#?}"
        );
        assert_eq!(parts[2].0 + 1, whole.find("select 3").unwrap(), "after the newline");
    }
}
