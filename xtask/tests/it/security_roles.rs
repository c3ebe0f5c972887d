//! Code running as a service's role (a migration, a seed, a dependency of the service) plays the
//! attacker: it must never become superuser through the admin's sessions, hold up `setup` without
//! bound, or change what later copies of its template get.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Project, contains};

/// The catalog lock's key (admin.rs `CATALOG_LOCK_KEY`, "xtask_db").
const CATALOG_LOCK_KEY: i64 = 0x7874_6173_6b5f_6462;

/// One service, `accounts`, with a migration and a seed.
fn service_project(engine: &str, extensions: &str) -> Project {
    let p = Project::new(engine);
    declare(&p, extensions);
    p.write("migrations/accounts/20240101000001_users.up.sql", "CREATE TABLE users (id int PRIMARY KEY);");
    p.write("seeds/accounts/01_users.sql", "INSERT INTO users VALUES (1);");
    p
}

fn declare(p: &Project, extensions: &str) {
    p.service("accounts", &format!("name = \"accounts\"\nextensions = [{extensions}]"));
}

fn role(p: &Project) -> String {
    format!("{}_accounts", p.name)
}

fn is_superuser(p: &Project) -> bool {
    p.admin().query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role(p)]).unwrap().get(0)
}

/// A function that makes the role a superuser when a superuser calls it (and does nothing when the
/// role itself does): SECURITY INVOKER, so it escalates only with the caller's rights.
fn escalating_body(role: &str) -> String {
    format!(
        "BEGIN \
           BEGIN EXECUTE 'ALTER ROLE \"{role}\" SUPERUSER'; \
           EXCEPTION WHEN insufficient_privilege THEN NULL; END; \
           RETURN true; \
         END"
    )
}

/// The service's URL on another database of the same server.
fn on_db(url: &str, db: &str) -> String {
    format!("{}/{db}", url.rsplit_once('/').unwrap().0)
}

/// Runs xtask like `Project::run`, but gives up (killing it) after `limit`: `None` then.
fn run_bounded(
    p: &Project,
    args: &[&str],
    extra_env: &[(&str, &str)],
    limit: Duration,
) -> Option<(i32, String)> {
    let mut child = p
        .command(args)
        .envs(extra_env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            return Some((status.code().unwrap_or(-1), stderr));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The role owns `public` in its database: its own `public.unnest(text[])` is a better match for
/// the extension check's `unnest($1::text[])` than the built-in one. Setup enables a newly declared
/// extension there as the admin, and must not call it.
pub fn planted_unnest_does_not_run_as_admin(engine: &str) {
    let p = service_project(engine, "");
    p.ok(&["setup"]);
    let mut service = p.service_client("accounts");
    service
        .batch_execute(&format!(
            "CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql SECURITY INVOKER AS $$ \
             BEGIN \
               BEGIN EXECUTE 'ALTER ROLE \"{role}\" SUPERUSER'; \
               EXCEPTION WHEN insufficient_privilege THEN NULL; END; \
               RETURN QUERY SELECT x FROM pg_catalog.unnest($1) AS x; \
             END $$",
            role = role(&p)
        ))
        .unwrap();
    declare(&p, "\"citext\"");
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "enabled extension(s) citext");
    assert!(!is_superuser(&p), "setup ran the role's public.unnest as the admin:\n{err}");
    // The extension went where the role's objects are, as before.
    let schema: String = service
        .query_one("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'citext'", &[])
        .unwrap()
        .get(0);
    assert_eq!(schema, "public");
}

/// Migrations and seeds build the template as the role's own login: under SET ROLE on an admin
/// session, the role's code could RESET ROLE and act as the admin.
pub fn migrations_cannot_reset_role(engine: &str) {
    let p = Project::new(engine);
    declare(&p, "");
    let escalate = format!(
        "DO $$ BEGIN \
           BEGIN EXECUTE 'RESET ROLE'; EXECUTE 'ALTER ROLE \"{}\" SUPERUSER'; \
           EXCEPTION WHEN insufficient_privilege THEN NULL; END; \
         END $$;",
        role(&p)
    );
    p.write(
        "migrations/accounts/20240101000001_users.up.sql",
        &format!("{escalate}\nCREATE TABLE users (id int);"),
    );
    p.write("seeds/accounts/01_users.sql", &format!("{escalate}\nINSERT INTO users VALUES (1);"));
    p.ok(&["setup"]);
    assert!(!is_superuser(&p), "a migration or seed building the template acted as the admin");
    let owner: String = p
        .service_client("accounts")
        .query_one("SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = 'users'", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, role(&p));
}

/// A schema named after the admin user comes first on the admin's default search_path; a
/// `_sqlx_migrations` (and `_xtask_seeds`) view there over an escalating function must not be read
/// as the admin by db-status, migrations or pre-commit, which still work (pre-commit reports the
/// hand-made objects as drift).
pub fn admin_named_schema_is_not_read_as_admin(engine: &str) {
    let p = service_project(engine, "");
    p.git(&["config", "user.email", "dev@example.com"]);
    p.git(&["config", "user.name", "Dev"]);
    p.ok(&["setup"]);
    let mut service = p.service_client("accounts");
    service
        .batch_execute(&format!(
            "CREATE SCHEMA postgres; \
             CREATE FUNCTION postgres.escalate() RETURNS boolean LANGUAGE plpgsql SECURITY INVOKER AS $$ {} $$; \
             CREATE VIEW postgres._sqlx_migrations AS SELECT * FROM public._sqlx_migrations WHERE postgres.escalate(); \
             CREATE VIEW postgres._xtask_seeds AS SELECT * FROM public._xtask_seeds WHERE postgres.escalate();",
            escalating_body(&role(&p))
        ))
        .unwrap();

    let status = p.status("main");
    assert!(!is_superuser(&p), "db-status read the role's view as the admin");
    assert_eq!(status["databases"][0]["pending_migrations"], 0, "{status}");
    assert_eq!(status["databases"][0]["seeds"], "current", "{status}");

    let listed = p.ok(&["migrations"]);
    assert!(!is_superuser(&p), "migrations read the role's view as the admin");
    contains(&listed, "users");

    p.write("migrations/accounts/20240101000002_more.up.sql", "CREATE TABLE more (id int);");
    p.write("migrations/accounts/20240101000002_more.down.sql", "DROP TABLE more;");
    p.git(&["add", "migrations"]);
    let out = p.run(&["pre-commit", "--staged"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!is_superuser(&p), "pre-commit read the role's view as the admin:\n{err}");
    contains(&err, "ok    accounts: applied");
    // The hostile objects were made by hand, outside the migrations: drift, the one check failing.
    contains(&err, "FAIL  accounts: drift");
    assert_eq!(err.matches("FAIL").count(), 1, "only the drift check fails:\n{err}");
}

/// On a cluster the tool owns, the roles cannot reach the maintenance database (where the catalog
/// lock lives); a lock a role can reach (the extension lock in its own database) holds setup up
/// for XTASK_LOCK_TIMEOUT at most, and the holder is named.
pub fn roles_cannot_hold_up_setup(engine: &str) {
    let p = service_project(engine, "");
    p.ok(&["setup"]);
    let url = p.ok(&["db-endpoint", "--db", "accounts"]).trim().to_owned();
    for db in ["postgres", "template1"] {
        let refused = postgres::Client::connect(&on_db(&url, db), postgres::NoTls)
            .err()
            .unwrap_or_else(|| panic!("the service's role must not connect to {db}"));
        assert_eq!(refused.code().map(|c| c.code()), Some("42501"), "{refused}");
    }

    let mut squatter =
        postgres::Client::connect(&format!("{url}?application_name=squatter"), postgres::NoTls).unwrap();
    let pid: i32 = squatter.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    squatter.execute("SELECT pg_advisory_lock($1)", &[&CATALOG_LOCK_KEY]).unwrap();
    declare(&p, "\"citext\"");
    let start = Instant::now();
    let (code, err) = run_bounded(&p, &["setup"], &[("XTASK_LOCK_TIMEOUT", "2")], Duration::from_secs(40))
        .expect("setup waited on the role's lock without bound");
    assert_eq!(code, 1, "{err}");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
    contains(&err, &format!("pid {pid}"));
    contains(&err, &format!("role {}", role(&p)));
    contains(&err, "squatter");
    contains(&err, "XTASK_LOCK_TIMEOUT");
    contains(&err, &format!("waiting for the extension lock in {}, held by pid {pid}", role(&p)));
    drop(squatter);
    p.ok(&["setup"]);
}

/// On a server the tool does not own nothing is revoked, so a role can take the catalog lock in
/// the maintenance database: setup then gives up after XTASK_LOCK_TIMEOUT, naming the holder.
#[test]
fn external_engine_catalog_lock_wait_is_bounded() {
    let server = Project::new("native");
    server.ok(&["db-up"]);
    let mut p = Project::new("external");
    p.use_server(&server);
    p.set("XTASK_DATABASE_URL", &p.admin_url("postgres"));
    declare(&p, "");
    p.ok(&["setup"]);
    let url = p.ok(&["db-endpoint", "--db", "accounts"]).trim().to_owned();
    let mut squatter = postgres::Client::connect(
        &format!("{}?application_name=squatter", on_db(&url, "postgres")),
        postgres::NoTls,
    )
    .expect("on a server the tool does not own, PUBLIC's CONNECT on postgres is left alone");
    let pid: i32 = squatter.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    squatter.execute("SELECT pg_advisory_lock($1)", &[&CATALOG_LOCK_KEY]).unwrap();
    let start = Instant::now();
    let args = ["setup", "--branch", "feature/locked"];
    let (code, err) = run_bounded(&p, &args, &[("XTASK_LOCK_TIMEOUT", "2")], Duration::from_secs(40))
        .expect("setup waited on the catalog lock without bound");
    assert_eq!(code, 1, "{err}");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
    contains(&err, &format!("waiting for the database-catalog lock, held by pid {pid}"));
    contains(&err, "the database-catalog lock is still held by");
    contains(&err, &format!("pid {pid}"));
    contains(&err, &format!("role {}", role(&p)));
    contains(&err, "squatter");
    drop(squatter);
    p.ok(&["setup", "--branch", "feature/locked"]);
    p.ok(&["teardown"]);
}

/// The role cannot reopen its template and plant a table that every later copy inherits; a
/// template it owns (made before templates were sealed) is built again; copies stay the role's.
pub fn templates_cannot_be_poisoned(engine: &str) {
    let p = service_project(engine, "");
    p.ok(&["setup"]);
    let templates = p.templates_on_server();
    assert_eq!(templates.len(), 1, "{templates:?}");
    let template = &templates[0];
    let url = p.ok(&["db-endpoint", "--db", "accounts"]).trim().to_owned();
    let mut service = p.service_client("accounts");
    let reopened =
        service.batch_execute(&format!("ALTER DATABASE \"{template}\" WITH ALLOW_CONNECTIONS true"));
    if reopened.is_ok() {
        // What the role could do then: plant a table, and close it again.
        let mut inside = postgres::Client::connect(&on_db(&url, template), postgres::NoTls).unwrap();
        inside.batch_execute("CREATE TABLE planted (x int)").unwrap();
        drop(inside);
        service
            .batch_execute(&format!("ALTER DATABASE \"{template}\" WITH ALLOW_CONNECTIONS false"))
            .unwrap();
    }
    p.ok(&["setup", "--branch", "feature/poisoned"]);
    let mut copy =
        postgres::Client::connect(&p.endpoint_of("accounts", "feature/poisoned"), postgres::NoTls).unwrap();
    let planted: bool =
        copy.query_one("SELECT to_regclass('public.planted') IS NOT NULL", &[]).unwrap().get(0);
    assert!(!planted, "a new branch database inherited the table the role planted in its template");
    let refused = reopened.expect_err("the role must not be able to alter its template");
    assert_eq!(refused.code().map(|c| c.code()), Some("42501"), "{refused}");
    assert_copy_is_the_roles(&p, &mut copy);

    // A template the role owns, as setups before sealing left them, is not trusted.
    p.admin().batch_execute(&format!("ALTER DATABASE \"{template}\" OWNER TO \"{}\"", role(&p))).unwrap();
    let (_, err) = p.ok_err(&["setup", "--branch", "feature/after"]);
    contains(&err, &format!("dropped template {template} to build it again"));
    let owner: String = p
        .admin()
        .query_one("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", &[template])
        .unwrap()
        .get(0);
    assert_eq!(owner, "postgres", "the rebuilt template is the admin's");
    let mut copy =
        postgres::Client::connect(&p.endpoint_of("accounts", "feature/after"), postgres::NoTls).unwrap();
    assert_copy_is_the_roles(&p, &mut copy);
}

/// A copy of a template: the role's database, its tables the role's, and the role can create more.
fn assert_copy_is_the_roles(p: &Project, copy: &mut postgres::Client) {
    let row = copy
        .query_one(
            "SELECT pg_get_userbyid(d.datdba)::text, pg_get_userbyid(c.relowner)::text \
             FROM pg_database d, pg_class c WHERE d.datname = current_database() AND c.relname = 'users'",
            &[],
        )
        .unwrap();
    let (database_owner, table_owner): (String, String) = (row.get(0), row.get(1));
    assert_eq!((database_owner.as_str(), table_owner.as_str()), (role(p).as_str(), role(p).as_str()));
    copy.batch_execute("CREATE TABLE made_later (id int); DROP TABLE made_later").unwrap();
    let seeded: i64 = copy.query_one("SELECT count(*) FROM users", &[]).unwrap().get(0);
    assert_eq!(seeded, 1);
}

trait EndpointOf {
    fn endpoint_of(&self, db: &str, branch: &str) -> String;
}

impl EndpointOf for Project {
    fn endpoint_of(&self, db: &str, branch: &str) -> String {
        self.ok(&["db-endpoint", "--db", db, "--branch", branch]).trim().to_owned()
    }
}
