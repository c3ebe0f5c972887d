//! Where a server is and how to reach it: endpoints, URLs (with the password redacted for display)
//! and waiting until a server really accepts connections.

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use postgres::error::SqlState;
use postgres::{Client, NoTls};

use crate::tls::{SslMode, Tls};

/// A server address and login. The password is kept out of `Debug` output.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The database named in an external admin URL; used for admin work.
    pub admin_db: String,
    /// Sessions log in with `search_path` set to `pg_catalog` alone: the admin's sessions, so no
    /// function, operator or table a service's role made can stand in for a built-in one and run
    /// with the admin's rights. Off for a service's own login and for work in a database nothing
    /// but the admin touches (see [`Endpoint::login_as`], [`Endpoint::with_own_search_path`]).
    pub pinned_search_path: bool,
    /// TLS to this server: none for the ones this tool runs on loopback.
    pub tls: Tls,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted_url(&self.admin_db))
    }
}

impl Endpoint {
    pub fn local(port: u16, user: &str, password: &str) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            user: user.into(),
            password: password.into(),
            admin_db: "postgres".into(),
            pinned_search_path: true,
            tls: Tls::disabled(),
        }
    }

    /// The same server, logged in as `user` (a service's role) with its own search_path.
    pub fn login_as(&self, user: &str, password: &str) -> Endpoint {
        Endpoint { user: user.into(), password: password.into(), pinned_search_path: false, ..self.clone() }
    }

    /// The same login with the server's default search_path: for running the developer's own SQL
    /// (migrations, seeds) as the admin in a database no service's role can reach.
    pub fn with_own_search_path(&self) -> Endpoint {
        Endpoint { pinned_search_path: false, ..self.clone() }
    }

    /// Parses a `postgres://` URL (or a `key=value` string) as the external engine's admin endpoint.
    /// Its TLS settings (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, else libpq's variables)
    /// take relative paths from `base`.
    pub fn parse_admin_url(url: &str, base: &std::path::Path) -> Result<Endpoint> {
        let (rest, ssl) = split_ssl_settings(url);
        let config = postgres::Config::from_str(&rest).map_err(|e| anyhow!("{e}")).context(
            "database-url is not a valid PostgreSQL URL (expected postgres://USER:PASSWORD@HOST:PORT/DB)",
        )?;
        let given = |key: &str| ssl.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let tls = Tls::from_settings(&given, &|key| std::env::var(key).ok(), home.as_deref(), base)
            .context("the TLS settings of database-url")?;
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(host)) => host.clone(),
            Some(_) => bail!("database-url names a Unix socket; give a TCP host instead"),
            None => "127.0.0.1".into(),
        };
        let password =
            config.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
        Ok(Endpoint {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            user: config.get_user().context("database-url names no user")?.to_owned(),
            password,
            admin_db: config.get_dbname().unwrap_or("postgres").to_owned(),
            pinned_search_path: true,
            tls,
        })
    }

    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The URL with the password, for `db-endpoint` and `.env` only.
    pub fn url(&self, db: &str) -> String {
        self.format_url(db, Some(&self.password))
    }

    /// The URL with the password replaced by `***`, for everything printed.
    pub fn redacted_url(&self, db: &str) -> String {
        self.format_url(db, (!self.password.is_empty()).then_some("***"))
    }

    fn format_url(&self, db: &str, password: Option<&str>) -> String {
        let mut url = format!("postgres://{}", percent_encode(&self.user));
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            let shown = if password == "***" { password.to_owned() } else { percent_encode(password) };
            write!(url, ":{shown}").unwrap();
        }
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(url, "@{host}:{}/{}{}", self.port, percent_encode(db), self.tls.url_query()).unwrap();
        url
    }

    pub fn config(&self, db: &str) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(db)
            .application_name("xtask")
            .connect_timeout(Duration::from_secs(5));
        config
    }

    pub fn connect(&self, db: &str) -> Result<Client> {
        self.connect_with(db, None)
    }

    /// Connects with server settings given at login (`-c name=value ...`), which costs no round trip.
    pub fn connect_with(&self, db: &str, settings: Option<&str>) -> Result<Client> {
        let mut config = self.config(db);
        let options = match (self.pinned_search_path, settings) {
            (true, Some(settings)) => Some(format!("{PINNED_SEARCH_PATH} {settings}")),
            (true, None) => Some(PINNED_SEARCH_PATH.to_owned()),
            (false, settings) => settings.map(str::to_owned),
        };
        if let Some(options) = options {
            config.options(&options);
        }
        let connector = self.tls.connector()?;
        let attempt = match connect_bounded(config, &self.tls, connector, CONNECT_LIMIT) {
            Some(Err(error)) if let Some(explained) = crate::tls::explain(&error, &self.tls, &self.host) => {
                Err(anyhow!(explained))
            }
            Some(attempt) => attempt.map_err(|e| anyhow::Error::from(PgError::from(e))),
            None => Err(anyhow!("no answer within {} s", CONNECT_LIMIT.as_secs())),
        };
        attempt.with_context(|| format!("connect to {}", self.redacted_url(db)))
    }

    /// Connects for work that must stop when this process dies: the server checks every second that
    /// the client is still there (without it, a killed run's statement runs on to its end and
    /// commits, holding its locks). PostgreSQL 13 and older do not know the setting, and some
    /// platforms (macOS before 15, Windows) cannot honour it: the server refuses the login, and it is
    /// made again without it.
    pub fn connect_watched(&self, db: &str, settings: &str) -> Result<Client> {
        let watched = format!("{settings} -c client_connection_check_interval=1000");
        match self.connect_with(db, Some(watched.trim_start())) {
            // Unknown (13 and older), or known but unsupported on the server's platform.
            Err(error)
                if matches!(
                    PgError::code_in(&error),
                    Some(&SqlState::UNDEFINED_OBJECT | &SqlState::INVALID_PARAMETER_VALUE)
                ) =>
            {
                self.connect_with(db, (!settings.is_empty()).then_some(settings))
            }
            other => other,
        }
    }

    /// Environment for a `psql` child, so no secret is ever on a command line.
    pub fn libpq_env(&self, db: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGPASSWORD", self.password.clone()),
            ("PGDATABASE", db.to_owned()),
        ];
        env.extend(self.tls.libpq_env());
        env
    }
}

/// The server's major version (`server_version_num` / 10000), asked on an open session.
pub fn server_major(client: &mut Client) -> Result<u32> {
    let row = client
        .query_one("SELECT pg_catalog.current_setting('server_version_num')::int / 10000", &[])
        .map_err(PgError::from)?;
    Ok(u32::try_from(row.get::<_, i32>(0))?)
}

/// What an admin session logs in with (see [`Endpoint::pinned_search_path`]).
const PINNED_SEARCH_PATH: &str = "-c search_path=pg_catalog";

/// The longest a login may take: a peer that accepts TCP but never answers must not hang a command.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// Connects on a helper thread and gives up after `limit` (`None`): the driver's own timeout only
/// covers opening the socket, not a server that accepted it and then went quiet.
/// `connector` is `tls`'s (see [`Tls::connector`]).
fn connect_bounded(
    mut config: postgres::Config,
    tls: &Tls,
    connector: Option<postgres_rustls::MakeTlsConnector>,
    limit: Duration,
) -> Option<Result<Client, postgres::Error>> {
    let mode = tls.mode;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let attempt = match (mode, connector) {
            (SslMode::Disable, _) | (_, None) => {
                config.ssl_mode(postgres::config::SslMode::Disable).connect(NoTls)
            }
            // libpq's `allow`: plain text first, TLS when the server refuses that.
            (SslMode::Allow, Some(connector)) => {
                match config.ssl_mode(postgres::config::SslMode::Disable).connect(NoTls) {
                    Err(e) if e.code() == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION) => {
                        config.ssl_mode(postgres::config::SslMode::Require).connect(connector)
                    }
                    other => other,
                }
            }
            (SslMode::Prefer, Some(connector)) => {
                config.ssl_mode(postgres::config::SslMode::Prefer).connect(connector)
            }
            (_, Some(connector)) => config.ssl_mode(postgres::config::SslMode::Require).connect(connector),
        };
        let _ = sender.send(attempt);
    });
    receiver.recv_timeout(limit).ok()
}

/// The URL (or `key=value` string) without the TLS settings [`Tls`] reads, and those settings.
fn split_ssl_settings(url: &str) -> (String, Vec<(String, String)>) {
    let is_ssl = |pair: &str| {
        crate::tls::PARAMETERS.iter().any(|key| pair.split_once('=').is_some_and(|(k, _)| k == *key))
    };
    let taken = |pair: &str| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key.to_owned(), percent_decode(value))
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), Vec::new()) };
        let (ssl, rest): (Vec<&str>, Vec<&str>) = query.split('&').partition(|pair| is_ssl(pair));
        let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
        return (url, ssl.into_iter().map(taken).collect());
    }
    let (ssl, rest): (Vec<&str>, Vec<&str>) = url.split_whitespace().partition(|pair| is_ssl(pair));
    (rest.join(" "), ssl.into_iter().map(taken).collect())
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%').then(|| text.get(i + 1..i + 3)).flatten();
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            write!(out, "%{byte:02X}").unwrap();
        }
    }
    out
}

/// A server error rendered in full, keeping its SQLSTATE so callers can tell causes apart.
#[derive(Debug)]
pub struct PgError {
    pub code: Option<SqlState>,
    /// The connection was lost under a statement (see [`connection_lost`]).
    pub lost: bool,
    text: String,
}

impl From<postgres::Error> for PgError {
    fn from(error: postgres::Error) -> PgError {
        PgError {
            code: error.code().cloned(),
            lost: connection_lost(&error),
            text: describe_pg_error(&error),
        }
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for PgError {}

impl PgError {
    /// The SQLSTATE anywhere in an error chain.
    pub fn code_in(error: &anyhow::Error) -> Option<&SqlState> {
        error.chain().find_map(|e| e.downcast_ref::<PgError>()).and_then(|e| e.code.as_ref())
    }

    /// Whether an error chain ends in a lost connection.
    pub fn lost_in(error: &anyhow::Error) -> bool {
        error.chain().any(|e| e.downcast_ref::<PgError>().is_some_and(|e| e.lost))
    }
}

/// Whether an established connection went away (the server stopped, crashed or was killed, the
/// session was terminated, the network dropped), as opposed to a statement failing or a login
/// being refused. Then nothing more can be sent on it, and what was in flight either committed
/// whole or not at all.
pub fn connection_lost(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        // Class 57P: the server ended the session (shutdown, crash, pg_terminate_backend).
        return [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN].contains(code);
    }
    // An I/O error on a session (reset, broken pipe); the driver names a failed login otherwise.
    let io = std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>());
    io && !error.to_string().starts_with("error connecting")
}

/// A server error in full: severity, message, DETAIL and HINT.
pub fn describe_pg_error(error: &postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        };
    };
    let mut text = format!("{}: {}", db.severity(), db.message());
    if let Some(detail) = db.detail() {
        write!(text, "\nDETAIL: {detail}").unwrap();
    }
    if let Some(hint) = db.hint() {
        write!(text, "\nHINT: {hint}").unwrap();
    }
    text
}

/// How to tell, while waiting, that the server has died, and what to show when it has.
pub struct ReadyWatch<'a> {
    /// `Some(reason)` once the server process is gone; asked about once a second.
    pub died: &'a dyn Fn() -> Option<String>,
    pub log_tail: &'a dyn Fn() -> String,
}

/// Polls with real TCP logins until the server answers, printing one progress line when it is slow.
/// A dead server or the timeout ends the wait with the last error and the server's log tail.
pub fn wait_ready(endpoint: &Endpoint, timeout: Duration, watch: &ReadyWatch) -> Result<()> {
    let start = Instant::now();
    let mut announced = false;
    let mut next_liveness_check = Duration::from_secs(1);
    let mut pause = Duration::from_millis(20);
    loop {
        let mut config = endpoint.config(&endpoint.admin_db);
        config.connect_timeout(Duration::from_secs(2));
        let connector = endpoint.tls.connector()?;
        let (error, refused) = match connect_bounded(config, &endpoint.tls, connector, Duration::from_secs(2))
        {
            Some(Ok(_)) => return Ok(()),
            // A certificate, or a server without TLS when TLS is asked for, will not change by waiting.
            Some(Err(error))
                if let Some(explained) = crate::tls::explain(&error, &endpoint.tls, &endpoint.host) =>
            {
                bail!("{explained}")
            }
            Some(Err(error)) => (describe_pg_error(&error), is_login_refused(&error)),
            None => ("connected, but the server did not answer the login within 2 s".to_owned(), false),
        };
        if refused {
            return Err(LoginRefused(format!(
                "the server at {} refused the login: {}\n\
                 The password is set only when the server's data is first created. Set XTASK_PASSWORD \
                 (or `password` in [workspace.metadata.xtask]) to the one it was created with, or run \
                 `cargo xtask teardown` to delete the server and its data and start afresh",
                endpoint.redacted_url(&endpoint.admin_db),
                error
            ))
            .into());
        }
        if start.elapsed() >= next_liveness_check {
            next_liveness_check += Duration::from_secs(1);
            if let Some(reason) = (watch.died)() {
                bail!(
                    "PostgreSQL stopped before accepting connections ({reason})\nlast error: {}\n{}",
                    error,
                    (watch.log_tail)()
                );
            }
        }
        if start.elapsed() >= timeout {
            bail!(
                "PostgreSQL at {}:{} did not accept connections within {} s\nlast error: {}\n{}",
                endpoint.host,
                endpoint.port,
                timeout.as_secs(),
                error,
                (watch.log_tail)()
            );
        }
        if !announced && start.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "waiting for PostgreSQL at {}:{} to accept connections (up to {} s)...",
                endpoint.host,
                endpoint.port,
                timeout.as_secs()
            );
            announced = true;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The server answered but refused the login (password or user): an engine may try another password.
#[derive(Debug)]
pub struct LoginRefused(String);

impl std::fmt::Display for LoginRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoginRefused {}

impl LoginRefused {
    pub fn is_in(error: &anyhow::Error) -> bool {
        error.chain().any(|e| e.is::<LoginRefused>())
    }
}

fn is_login_refused(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_and_redact() {
        let e = Endpoint::local(5433, "dev user", "p@ss:/word");
        assert_eq!(e.url("app"), "postgres://dev%20user:p%40ss%3A%2Fword@127.0.0.1:5433/app");
        assert_eq!(e.redacted_url("app"), "postgres://dev%20user:***@127.0.0.1:5433/app");
        assert_eq!(format!("{e:?}"), "postgres://dev%20user:***@127.0.0.1:5433/postgres");
    }

    #[test]
    fn admin_url_round_trips() {
        let e = Endpoint::parse_admin_url(
            "postgres://admin:s%40cret@db.internal:6543/ops",
            std::path::Path::new("/"),
        )
        .unwrap();
        assert_eq!((e.host.as_str(), e.port, e.user.as_str()), ("db.internal", 6543, "admin"));
        assert_eq!(e.password, "s@cret");
        assert_eq!(e.admin_db, "ops");
        assert!(!e.is_loopback());
        assert!(
            Endpoint::parse_admin_url("postgres://a@localhost/x", std::path::Path::new("/"))
                .unwrap()
                .is_loopback()
        );
        assert!(
            Endpoint::parse_admin_url("postgres://a@[::1]:5/x", std::path::Path::new("/"))
                .unwrap()
                .is_loopback()
        );
        assert!(
            Endpoint::parse_admin_url("postgres://a@127.0.0.1/x", std::path::Path::new("/"))
                .unwrap()
                .is_loopback()
        );
        assert!(Endpoint::parse_admin_url("not a url", std::path::Path::new("/")).is_err());
    }
}
