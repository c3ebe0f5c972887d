//! TLS to a server this tool does not own (the external engine): a native cluster made by the test
//! with `ssl = on`, a CA and certificates made by the test with openssl, and a pg_hba.conf that
//! accepts TLS connections only (`hostssl`), one role logging in by client certificate.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Project, contains};

/// The role that logs in with a client certificate (CN = its name) instead of a password.
const CERT_USER: &str = "xt_cert_admin";
/// A managed server's kind of admin: NOSUPERUSER CREATEDB CREATEROLE, and its password.
const MANAGED_ADMIN: (&str, &str) = ("xt_app_admin", "x-managed-admin-pw");

/// A running cluster that speaks TLS only, and the files a client needs.
struct TlsServer {
    server: Project,
    certs: tempfile::TempDir,
    pgdata: PathBuf,
    /// pg_hba.conf as the native engine wrote it, put back (and the server reloaded) on drop so
    /// that its teardown can log in.
    hba: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output();
    let out = out.expect("openssl must be installed for the TLS tests (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A key and a certificate `name`.pem signed by `ca`, with `extensions` (an openssl extfile).
pub fn signed(dir: &Path, name: &str, subject: &str, ca: &str, extensions: &str) {
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).unwrap();
    let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
    openssl(
        dir,
        &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            .iter()
            .copied()
            .chain(["-keyout", &key, "-out", &csr, "-subj", subject])
            .collect::<Vec<_>>(),
    );
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &["x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-CAcreateserial", "-days", "2"]
            .iter()
            .copied()
            .chain(["-out", &pem, "-extfile", &ext])
            .collect::<Vec<_>>(),
    );
}

pub fn authority(dir: &Path, name: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let subject = format!("/CN=xtask test {name}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ]
        .iter()
        .copied()
        .chain(["-keyout", &key, "-out", &pem, "-subj", &subject])
        .collect::<Vec<_>>(),
    );
}

impl TlsServer {
    /// `names`: the server certificate's subjectAltName (`DNS:localhost`, `IP:127.0.0.1`).
    fn start(names: &str) -> TlsServer {
        TlsServer::start_with(names, false, None)
    }

    /// `client_certificates`: every password login needs a valid client certificate too
    /// (`clientcert=verify-ca`). `major`: the server's PostgreSQL major (managed binaries).
    fn start_with(names: &str, client_certificates: bool, major: Option<u32>) -> TlsServer {
        let certs = tempfile::Builder::new().prefix("xtask-it-tls-").tempdir().unwrap();
        let dir = certs.path();
        authority(dir, "ca");
        authority(dir, "other-ca");
        signed(
            dir,
            "server",
            "/CN=localhost",
            "ca",
            &format!("subjectAltName={names}\nextendedKeyUsage=serverAuth\n"),
        );
        signed(dir, "client", &format!("/CN={CERT_USER}"), "ca", "extendedKeyUsage=clientAuth\n");

        let mut server = Project::new("native");
        if let Some(major) = major {
            server.set("XTASK_POSTGRES", &major.to_string());
        }
        server.ok(&["db-up"]);
        let pgdata = server.data_dir().join("pgdata");
        // The server reads its key and certificates as its own user (postgres, when we are root).
        let meta = std::fs::metadata(pgdata.join("PG_VERSION")).unwrap();
        for file in ["server.pem", "server.key", "ca.pem"] {
            let target = pgdata.join(format!("tls-{file}"));
            std::fs::copy(dir.join(file), &target).unwrap();
            std::os::unix::fs::chown(&target, Some(std::os::unix::fs::MetadataExt::uid(&meta)), None)
                .unwrap();
            let mode = if file.ends_with(".key") { 0o600 } else { 0o644 };
            std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        }
        let mut admin = server.admin();
        for statement in [
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "ALTER SYSTEM SET ssl_cert_file = 'tls-server.pem'".into(),
            "ALTER SYSTEM SET ssl_key_file = 'tls-server.key'".into(),
            "ALTER SYSTEM SET ssl_ca_file = 'tls-ca.pem'".into(),
            format!("CREATE ROLE {CERT_USER} LOGIN SUPERUSER"),
            format!(
                "CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD '{}'",
                MANAGED_ADMIN.0, MANAGED_ADMIN.1
            ),
        ] {
            admin.batch_execute(&statement).unwrap();
        }
        let hba_path = pgdata.join("pg_hba.conf");
        let hba = std::fs::read_to_string(&hba_path).unwrap();
        let local: String =
            hba.lines().filter(|l| l.starts_with("local")).map(|l| format!("{l}\n")).collect();
        let clientcert = if client_certificates { " clientcert=verify-ca" } else { "" };
        std::fs::write(
            &hba_path,
            format!(
                "{local}hostssl all {CERT_USER} 127.0.0.1/32 cert\nhostssl all {CERT_USER} ::1/128 cert\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256{clientcert}\nhostssl all all ::1/128 scram-sha-256{clientcert}\n"
            ),
        )
        .unwrap();
        let tls = TlsServer { server, certs, pgdata, hba };
        tls.reload();
        tls
    }

    fn reload(&self) {
        let pid_file = std::fs::read_to_string(self.pgdata.join("postmaster.pid")).unwrap();
        let pid: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        // SAFETY: a signal to the server this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    fn file(&self, name: &str) -> String {
        self.certs.path().join(name).to_str().unwrap().to_owned()
    }

    /// The admin URL through `host`, with `query` (the TLS settings).
    fn url(&self, host: &str, query: &str) -> String {
        let plain = self.server.admin_url("postgres");
        format!("{}?{query}", plain.replace("@127.0.0.1:", &format!("@{host}:")))
    }

    /// The managed-style admin's URL through `host`, with `query`.
    fn managed_url(&self, host: &str, query: &str) -> String {
        let (user, password) = MANAGED_ADMIN;
        format!("postgres://{user}:{password}@{host}:{}/postgres?{query}", self.server.port)
    }

    /// A project on this server through `url`.
    fn project(&self, url: &str) -> Project {
        let mut p = Project::new("external");
        p.use_server(&self.server);
        p.set("XTASK_DATABASE_URL", url);
        p
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.pgdata.join("pg_hba.conf"), &self.hba);
        self.reload();
    }
}

fn detail(p: &Project) -> String {
    p.status("main")["server"]["detail"].as_str().unwrap().to_owned()
}

/// verify-full end to end: setup (roles, template, migrations, seeds), a branch from the template,
/// migrate and rollback, the declared schema checked in throwaway databases, backup and restore
/// (pg_dump and pg_restore over TLS too), psql through `connect`; the URLs written for the services
/// carry the same settings. The server refuses plain text, so none of it fell back to that.
#[test]
fn verify_full_end_to_end_and_nothing_in_plain_text() {
    verify_full_end_to_end(false, None);
}

/// The same with a managed server's kind of admin, which is no superuser.
#[test]
fn verify_full_end_to_end_with_an_admin_that_is_no_superuser() {
    verify_full_end_to_end(true, None);
}

/// And on PostgreSQL 18, whose CREATEROLE gives the creator ADMIN OPTION on what it makes only.
#[test]
fn verify_full_end_to_end_with_an_admin_that_is_no_superuser_on_postgres_18() {
    verify_full_end_to_end(true, Some(18));
}

fn verify_full_end_to_end(managed_admin: bool, major: Option<u32>) {
    let tls = TlsServer::start_with("DNS:localhost,IP:127.0.0.1", false, major);
    let ca = tls.file("ca.pem");
    let query = format!("sslmode=verify-full&sslrootcert={ca}");
    let url = if managed_admin { tls.managed_url("localhost", &query) } else { tls.url("localhost", &query) };
    let mut p = tls.project(&url);
    if managed_admin {
        p.unset("XTASK_PASSWORD");
        // As a team would write it: the CA beside Cargo.toml, named relative to it.
        std::fs::copy(&ca, p.path().join("ca.pem")).unwrap();
        p.set("XTASK_DATABASE_URL", &url.replace(&format!("sslrootcert={ca}"), "sslrootcert=ca.pem"));
    }
    let ca = if managed_admin { p.path().join("ca.pem").to_str().unwrap().to_owned() } else { ca };
    p.service("shop", "name = \"shop\"\nextensions = [\"pgcrypto\"]");
    p.write(
        "migrations/shop/20240101000001_items.up.sql",
        "CREATE TABLE items (id int PRIMARY KEY, name text);",
    );
    p.write("migrations/shop/20240101000001_items.down.sql", "DROP TABLE items;");
    p.write("seeds/shop/items.sql", "INSERT INTO items VALUES (1, 'tea') ON CONFLICT DO NOTHING;");
    p.ok(&["setup"]);
    let shown = detail(&p);
    contains(&shown, "TLS TLSv1.3");
    contains(&shown, "sslmode=verify-full, certificate and host name verified");
    let env = std::fs::read_to_string(p.path().join(".env")).unwrap();
    contains(&env, &format!("?sslmode=verify-full&sslrootcert={ca}"));

    p.ok(&["setup", "--branch", "feature"]);
    p.ok(&["rollback", "--db", "shop"]);
    p.ok(&["migrate"]);
    p.write(
        "migrations/shop/schema.sql",
        "CREATE EXTENSION IF NOT EXISTS pgcrypto;\nCREATE TABLE items (id int PRIMARY KEY, name text, note text);",
    );
    let (out, _) = p.ok_err(&["prepare", "note", "--db", "shop"]);
    assert_eq!(out.lines().count(), 2, "prepare wrote the migration pair");
    p.ok(&["migrate"]);
    let (_, err) = p.ok_err(&["schema", "--check", "--db", "shop"]);
    contains(&err, "exactly");
    let psql = |sql: &str| p.ok(&["connect", "--db", "shop", "--", "-Atc", sql]).trim().to_owned();
    psql("INSERT INTO items VALUES (2, 'cake', 'after the migration')");
    let installed_pg_dump =
        |major: u32| std::path::Path::new(&format!("/usr/lib/postgresql/{major}/bin/pg_dump")).exists();
    if major.is_some_and(|m| !installed_pg_dump(m)) {
        // The downloaded client tools have no TLS: pg_dump of the server's major is needed.
        let err = p.fails(&["backup", "--db", "shop"]);
        contains(&err, "over TLS (sslmode=verify-full), and this machine has none");
        contains(&err, "the PostgreSQL client tools this tool downloads are built without TLS");
    } else {
        let (out, _) = p.ok_err(&["backup", "--db", "shop"]);
        psql("DELETE FROM items");
        p.ok(&["restore", out.trim(), "--db", "shop"]);
    }
    let query =
        "SELECT ssl::text || ' ' || (SELECT name FROM items) FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(psql(query), "true cake", "psql ran over TLS and the restored row is there");

    // A plain-text URL is refused by the server.
    let plain = tls.project(&tls.url("localhost", "sslmode=disable"));
    contains(&plain.fails(&["setup"]), "no encryption");
    p.ok(&["teardown"]);
}

/// Certificate problems are errors that name the host, the mode and the fix; a client
/// certificate logs its role in.
#[test]
fn certificate_problems_are_named_and_client_certificates_log_in() {
    let tls = TlsServer::start("DNS:localhost");
    let ca = tls.file("ca.pem");

    let wrong_ca = tls.project(
        &tls.url("localhost", &format!("sslmode=verify-full&sslrootcert={}", tls.file("other-ca.pem"))),
    );
    let err = wrong_ca.fails(&["setup"]);
    contains(&err, "the certificate of localhost is not signed by a CA in");
    contains(
        &err,
        "(sslmode=verify-full): give the CA that signed the server's certificate with sslrootcert=PATH",
    );

    // The certificate names localhost only: verify-full through 127.0.0.1 is refused, verify-ca is not.
    let by_address = tls.project(&tls.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}")));
    let err = by_address.fails(&["setup"]);
    contains(&err, "is not valid for the name 127.0.0.1 (sslmode=verify-full checks it)");
    let ca_only = tls.project(&tls.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")));
    contains(&detail(&ca_only), "certificate verified, host name not");

    // No CA at all for a verifying mode: said before anything is sent.
    let none = tls.project(&tls.url("localhost", "sslmode=verify-full"));
    contains(
        &none.fails(&["setup"]),
        "sslmode=verify-full checks the server's certificate against a CA, and none is given",
    );
}

/// A server that asks every client for a certificate: the role logging in by certificate (its CN)
/// and a password login with a certificate get in, the same logins without one do not, and the
/// key's text is in no file or output of the tool (its path is).
#[test]
fn a_server_requiring_client_certificates() {
    let tls = TlsServer::start_with("DNS:localhost", true, None);
    let ca = tls.file("ca.pem");
    let port = tls.server.port;
    let (cert, key) = (tls.file("client.pem"), tls.file("client.key"));
    let client = format!("&sslcert={cert}&sslkey={key}");
    let mut by_cert = tls.project(&format!(
        "postgres://{CERT_USER}@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}{client}"
    ));
    by_cert.unset("XTASK_PASSWORD");
    by_cert.service("shop", "name = \"shop\"");
    let (out, err) = by_cert.ok_err(&["setup"]);
    contains(&detail(&by_cert), "TLS TLSv1.3");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let key_body = key_text.lines().nth(1).unwrap();
    let env = std::fs::read_to_string(by_cert.path().join(".env")).unwrap();
    contains(&env, &format!("sslkey={key}"));
    for shown in [&out, &err, &env] {
        assert!(!shown.contains(key_body) && !shown.contains("PRIVATE KEY"), "{shown}");
    }
    by_cert.ok(&["teardown"]);
    let with_password =
        tls.project(&tls.url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}{client}")));
    with_password.ok(&["db-status"]);
    contains(&detail(&with_password), "TLS TLSv1.3");
    for url in [
        format!("postgres://{CERT_USER}@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"),
        tls.url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}")),
    ] {
        contains(&tls.project(&url).fails(&["setup"]), "certificate");
    }
}

/// `require` against a server without TLS fails instead of falling back; `prefer` falls back and
/// db-status says so.
#[test]
fn require_against_a_server_without_tls_fails() {
    let server = Project::new("native");
    server.ok(&["db-up"]);
    let plain = server.admin_url("postgres");
    let mut p = Project::new("external");
    p.use_server(&server);
    p.set("XTASK_DATABASE_URL", &format!("{plain}?sslmode=require"));
    let err = p.fails(&["setup"]);
    contains(&err, "the server at 127.0.0.1 does not accept TLS, and sslmode=require asks for it");
    p.set("XTASK_DATABASE_URL", &format!("{plain}?sslmode=prefer"));
    contains(&detail(&p), "no TLS (sslmode=prefer)");
}
