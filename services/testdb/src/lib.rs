//! Test helper shared by the service crates: a fresh database for each test.
//!
//! `cargo xtask setup` creates this branch's databases and a pristine template of each (migrated and
//! seeded; see `cargo xtask help setup`), and writes into the workspace's `.env` the URL of each
//! branch database (`ACCOUNTS_DATABASE_URL`), the template's name (`ACCOUNTS_TEMPLATE_DATABASE`) and
//! the server's admin URL (`XTASK_ADMIN_URL`). [`TestDb::new`] copies the template into a database
//! of the test's own, so tests run in parallel without seeing each other's rows; it is dropped when
//! the test passes and kept, with its name printed, when the test fails. The environment wins over
//! `.env` for each variable (CI sets them for its run).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A database of one test's own: a copy of the branch's pristine template, owned by the service's
/// role, dropped when this value is (unless the test is failing: then it is kept for a look).
pub struct TestDb {
    name: String,
    url: String,
    admin_url: String,
}

/// Admin connections kept between tests of one process (a login costs more than the copy's
/// bookkeeping); each is used by one test at a time.
static IDLE_ADMINS: Mutex<Vec<postgres::Client>> = Mutex::new(Vec::new());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    /// A fresh copy of the template of the logical database `database` (as named by a service's
    /// `[package.metadata.xtask.database] name`).
    ///
    /// # Panics
    ///
    /// When `.env` and the environment lack what `cargo xtask setup` writes, when the template is
    /// gone (the migrations or seeds changed since the last setup), or when the server refuses.
    pub fn new(database: &str) -> TestDb {
        let template = variable(&format!("{}_TEMPLATE_DATABASE", database.to_ascii_uppercase()));
        let service_url = database_url(database);
        let admin_url = variable("XTASK_ADMIN_URL");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let suffix = format!("__test_{}_{n}", std::process::id());
        let base = template.split("__tpl_").next().unwrap_or(&template);
        let name = format!("{}{suffix}", &base[..base.len().min(63 - suffix.len())]);
        let owner = service_role(&service_url);
        off_runtime(|| with_admin(&admin_url, |client| copy_template(client, &template, &name, &owner)));
        let url =
            format!("{}/{name}", service_url.rsplit_once('/').map_or(service_url.as_str(), |(head, _)| head));
        TestDb { name, url, admin_url }
    }

    /// The URL to connect to it, as the service's role.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A test that fails by panicking (`assert!`, `unwrap`) keeps its database; one that returns an
/// `Err` does not (the value cannot tell), so tests that return `Result` should `unwrap` what
/// must hold.
impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "testdb: kept database {} of the failing test for a look (`cargo xtask connect` style: \
                 psql on it as the admin); drop it with DROP DATABASE \"{}\"",
                self.name, self.name
            );
            return;
        }
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        off_runtime(|| with_admin(&self.admin_url, |client| client.batch_execute(&sql)));
    }
}

/// The login of the service's URL: the role its test database is given to.
fn service_role(service_url: &str) -> String {
    let config: postgres::Config = service_url.parse().unwrap_or_else(|error| {
        panic!("testdb: the service's database URL is not a PostgreSQL URL: {error}")
    });
    match config.get_user() {
        Some(user) => user.to_owned(),
        None => panic!("testdb: the service's database URL names no user; run `cargo xtask setup` again"),
    }
}

/// Copies the template and gives the copy to `owner`, the service's role (the template itself is
/// the admin's, so the role cannot change what later copies get): the copy is labelled like the
/// template (with `test: true`, so `teardown` drops it and `prune` drops it once no one is
/// connected) and closed to PUBLIC like a branch database.
fn copy_template(
    client: &mut postgres::Client,
    template: &str,
    name: &str,
    owner: &str,
) -> Result<(), postgres::Error> {
    let row = client.query_opt(
        "SELECT (pg_catalog.shobj_description(oid, 'pg_database')::jsonb - 'template' - 'base' \
                 || pg_catalog.jsonb_build_object('test', true, 'created', \
                      pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')))::text \
         FROM pg_catalog.pg_database WHERE datname = $1",
        &[&template],
    )?;
    let Some(row) = row else {
        panic!(
            "the template database {template} does not exist: the migrations or seeds changed since the last \
             `cargo xtask setup` (or it was dropped); run `cargo xtask setup` again"
        );
    };
    let label: String = row.get(0);
    client.batch_execute(&format!(
        "CREATE DATABASE {} TEMPLATE {} OWNER {}",
        quote_ident(name),
        quote_ident(template),
        quote_ident(owner)
    ))?;
    client.batch_execute(&format!(
        "COMMENT ON DATABASE {} IS {}; REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
        quote_ident(name),
        quote_literal(&label),
        quote_ident(name)
    ))
}

/// Runs `work` on an idle admin connection (or a new one) and keeps the connection for the next test.
fn with_admin(admin_url: &str, work: impl FnOnce(&mut postgres::Client) -> Result<(), postgres::Error>) {
    let idle = IDLE_ADMINS.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut client = match idle.filter(|c| !c.is_closed()) {
        Some(client) => client,
        None => postgres::Client::connect(admin_url, postgres::NoTls).unwrap_or_else(|error| {
            panic!("testdb: cannot log in to the server as its admin (XTASK_ADMIN_URL): {error}; is it running? `cargo xtask setup` starts it")
        }),
    };
    if let Err(error) = work(&mut client) {
        panic!("testdb: {}", describe(&error));
    }
    IDLE_ADMINS.lock().unwrap_or_else(|e| e.into_inner()).push(client);
}

/// The postgres client runs its own runtime, which tokio forbids inside another (an async test):
/// the work runs on a thread of its own.
fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(work).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => error.to_string(),
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The value of `key` from the environment (non-empty) or the workspace's `.env`.
///
/// # Panics
///
/// When neither has it, saying to run `cargo xtask setup`.
fn variable(key: &str) -> String {
    if let Some(value) = std::env::var(key).ok().filter(|v| !v.is_empty()) {
        return value;
    }
    let root = workspace_root();
    match from_dotenv(&root.join(".env"), key) {
        Ok(Some(value)) => value,
        Ok(None) => panic!(
            "{key} is not set and {}/.env has no such line: run `cargo xtask setup` first (it creates \
             the databases and their templates and writes .env; with templates off, XTASK_TEMPLATES=0, \
             there is no template to copy)",
            root.display()
        ),
        Err(err) => panic!("{key} is not set and {}/.env cannot be read: {err}", root.display()),
    }
}

/// The connection URL of this branch's database `database`, shared by every test and run (use
/// [`TestDb`] for a database of the test's own): `<DATABASE>_DATABASE_URL` (e.g.
/// `ACCOUNTS_DATABASE_URL`) from the environment, where an empty value counts as unset, or from the
/// workspace root's `.env`. The process environment is never modified.
///
/// # Panics
///
/// When neither has the variable, saying to run `cargo xtask setup`; or when `.env` cannot be read.
pub fn database_url(database: &str) -> String {
    variable(&env_key(database))
}

/// The Redis URL and key prefix of `service` on this branch: `<SERVICE>_REDIS_URL` and
/// `<SERVICE>_REDIS_PREFIX` from the environment or the workspace's `.env`, as `cargo xtask setup`
/// writes them. The service's user may touch only keys starting with the prefix.
///
/// # Panics
///
/// When neither has them, saying to run `cargo xtask setup`.
pub fn redis(service: &str) -> (String, String) {
    let service = service.to_ascii_uppercase();
    (variable(&format!("{service}_REDIS_URL")), variable(&format!("{service}_REDIS_PREFIX")))
}

/// `accounts` → `ACCOUNTS_DATABASE_URL`.
fn env_key(database: &str) -> String {
    format!("{}_DATABASE_URL", database.to_ascii_uppercase())
}

/// The workspace root: this crate lives in `<root>/services/testdb`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("find the workspace root")
}

/// The non-empty value of `key` in the dotenv file at `path`; `Ok(None)` when the file or the line is
/// missing.
fn from_dotenv(path: &Path, key: &str) -> Result<Option<String>, dotenvy::Error> {
    let lines = match dotenvy::from_path_iter(path) {
        Ok(lines) => lines,
        Err(err) if err.not_found() => return Ok(None),
        Err(err) => return Err(err),
    };
    for line in lines {
        let (name, value) = line?;
        if name == key && !value.is_empty() {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_upper_cased() {
        assert_eq!(env_key("accounts"), "ACCOUNTS_DATABASE_URL");
        assert_eq!(env_key("order_lines"), "ORDER_LINES_DATABASE_URL");
    }

    #[test]
    fn reads_the_key_from_a_dotenv_file() {
        let path = std::env::temp_dir().join(format!("testdb-{}.env", std::process::id()));
        std::fs::write(&path, "DATABASE_URL=postgres://a/b\nNOTES_DATABASE_URL=postgres://u:p@h:5433/n\n")
            .unwrap();
        let notes = from_dotenv(&path, "NOTES_DATABASE_URL");
        let missing = from_dotenv(&path, "ACCOUNTS_DATABASE_URL");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(notes.unwrap().as_deref(), Some("postgres://u:p@h:5433/n"));
        assert_eq!(missing.unwrap(), None);
    }

    #[test]
    fn a_missing_file_has_no_key() {
        let path = std::env::temp_dir().join("testdb-no-such-file.env");
        assert_eq!(from_dotenv(&path, "NOTES_DATABASE_URL").unwrap(), None);
    }
}
