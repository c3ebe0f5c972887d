//! The external engine, tested against a native cluster addressed only by its URL.

use crate::harness::{Project, contains};

#[test]
fn external_engine_creates_and_drops_only_its_labelled_databases() {
    let server = Project::new("native");
    server.ok(&["setup"]);
    let admin_url = server.admin_url("postgres");

    let mut p = Project::new("external");
    p.use_server(&server); // for the harness's own admin connection
    p.set("XTASK_DATABASE_URL", &admin_url);
    p.set("XTASK_PORT", "1"); // ignored by the external engine
    let (_, err) = p.ok_err(&["db-up"]);
    contains(&err, "already running");
    p.ok(&["setup"]);
    p.ok(&["setup", "--branch", "feature/a"]);
    let status = p.status("feature/a");
    assert_eq!(status["engine"], "external");
    assert_eq!(status["databases"][0]["exists"], true);
    contains(&p.endpoint("main"), &format!("127.0.0.1:{}/{}", server.port, p.name));

    // A database that merely looks like ours, without the label, is never dropped.
    let impostor = format!("{}_impostor", p.name);
    server.admin().batch_execute(&format!("CREATE DATABASE \"{impostor}\"")).unwrap();
    let mut same_name = Project::new("external");
    same_name.set("XTASK_DATABASE_URL", &admin_url);
    same_name.set("XTASK_PROJECT", &p.name);
    same_name.set("XTASK_BRANCH", "impostor");
    let err = same_name.fails(&["wipe"]);
    contains(&err, "refusing to drop");
    let err = same_name.fails(&["setup"]);
    contains(&err, "not created by xtask");

    p.ok(&["wipe", "--branch", "feature/a"]);
    assert_eq!(p.databases_on_server(), vec![p.name.clone(), impostor.clone()]);
    p.ok(&["setup", "--branch", "feature/b"]);
    let (_, err) = p.ok_err(&["db-down"]);
    contains(&err, "nothing to stop");
    p.ok(&["teardown"]);
    assert_eq!(p.databases_on_server(), vec![impostor.clone()]);
    // The server's own project is untouched.
    assert!(server.db_exists("main"));
}

/// Services on a server xtask does not own: roles are made, reused by branches, and dropped by
/// teardown with the databases, leaving everything else on the server alone.
#[test]
fn external_engine_services_and_their_roles() {
    let server = Project::new("native");
    server.ok(&["db-up"]);
    let mut p = Project::new("external");
    p.use_server(&server);
    p.set("XTASK_DATABASE_URL", &p.admin_url("postgres"));
    p.service("accounts", "name = \"accounts\"\nextensions = [\"pgcrypto\"]");
    p.service("notes", "name = \"notes\"\nreads = [\"accounts\"]");
    p.ok(&["setup"]);
    p.ok(&["setup", "--branch", "feature/a"]);
    assert_eq!(p.databases_on_server().len(), 4);
    let roles = |p: &Project| -> Vec<String> {
        let rows = p
            .admin()
            .query("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1", &[&p.name])
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    };
    assert_eq!(roles(&p), [format!("{}_accounts", p.name), format!("{}_notes", p.name)]);
    let url = p.ok(&["db-endpoint", "--db", "notes"]);
    contains(&url, &format!("{}_notes:", p.name));
    postgres::Client::connect(url.trim(), postgres::NoTls).unwrap();
    // A second machine (its own data directory, no password file) sharing the server arrives at
    // the same passwords: its setup does not lock the first one out.
    let mut colleague = Project::new("external");
    colleague.set("XTASK_DATABASE_URL", &p.admin_url("postgres"));
    colleague.set("XTASK_PROJECT", &p.name);
    colleague.service("accounts", "name = \"accounts\"\nextensions = [\"pgcrypto\"]");
    colleague.service("notes", "name = \"notes\"\nreads = [\"accounts\"]");
    let (_, err) = colleague.ok_err(&["setup", "--branch", "colleague"]);
    assert!(!err.contains("new password"), "{err}");
    assert_eq!(colleague.ok(&["db-endpoint", "--db", "notes"]), url);
    postgres::Client::connect(url.trim(), postgres::NoTls).unwrap();
    colleague.ok(&["wipe", "--branch", "colleague"]);

    p.ok(&["wipe", "--branch", "feature/a"]);
    assert_eq!(roles(&p).len(), 2, "wipe keeps the roles");
    let (_, err) = p.ok_err(&["teardown"]);
    contains(&err, "4 database(s) and 2 role(s)"); // each service's branch database and template
    assert!(p.databases_on_server().is_empty());
    assert!(roles(&p).is_empty());
    assert!(postgres::Client::connect(url.trim(), postgres::NoTls).is_err(), "the role is gone");
}

#[test]
fn external_engine_refuses_destructive_work_on_remote_hosts_without_force() {
    let mut p = Project::new("external");
    // Never contacted: the refusal comes before any connection.
    p.set("XTASK_DATABASE_URL", "postgres://admin:hunter2@db.team.invalid:5432/postgres");
    for task in ["wipe", "teardown"] {
        let err = p.fails(&[task]);
        contains(&err, "--force");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

#[test]
fn external_engine_without_url_says_what_to_set() {
    let p = Project::new("external");
    let err = p.fails(&["db-up"]);
    contains(&err, "XTASK_DATABASE_URL");
}

#[test]
fn external_engine_dead_server_is_a_clear_error() {
    let mut p = Project::new("external");
    let port = crate::harness::free_port();
    p.set("XTASK_DATABASE_URL", &format!("postgres://u:topsecret@127.0.0.1:{port}/postgres"));
    let err = p.fails(&["setup"]);
    contains(&err, "does not answer");
    assert!(!err.contains("topsecret"), "{err}");
    assert_eq!(p.status("main")["server"]["state"], "unreachable");
}

/// A native server of `major` with a managed-style admin (NOSUPERUSER CREATEDB CREATEROLE), and
/// an external project logging in as that admin.
fn managed_admin_project(major: Option<u32>) -> (Project, Project) {
    let mut server = Project::new("native");
    if let Some(major) = major {
        server.set("XTASK_POSTGRES", &major.to_string());
    }
    server.ok(&["db-up"]);
    server
        .admin()
        .batch_execute("CREATE ROLE app_admin LOGIN CREATEDB CREATEROLE PASSWORD 'x-managed-admin-pw'")
        .unwrap();
    let mut p = Project::new("external");
    // XTASK_PASSWORD stays the superuser's, for the harness's own admin connection; the URL's
    // password is the one xtask logs in with.
    p.use_server(&server);
    let url = format!("postgres://app_admin:x-managed-admin-pw@127.0.0.1:{}/postgres", server.port);
    p.set("XTASK_DATABASE_URL", &url);
    (server, p)
}

/// A managed-style admin (NOSUPERUSER CREATEDB CREATEROLE) on a server of `major`: the life cycle
/// works, teardown leaves nothing, and an extension only a superuser may create is an error that
/// says what the server's owner can run.
fn non_superuser_admin_on(major: Option<u32>) {
    let (server, p) = managed_admin_project(major);
    p.service("shop", "name = \"shop\"\nextensions = [\"pgcrypto\"]");
    p.service("logs", "name = \"logs\"\nextensions = [\"file_fdw\"]");
    p.write(
        "migrations/shop/20240101000001_items.up.sql",
        "CREATE TABLE items (id int PRIMARY KEY, token uuid DEFAULT gen_random_uuid());",
    );
    p.write("migrations/shop/20240101000001_items.down.sql", "DROP TABLE items;");
    p.write("seeds/shop/items.sql", "INSERT INTO items (id) VALUES (1) ON CONFLICT DO NOTHING;");

    let err = p.fails(&["setup"]);
    contains(
        &err,
        "extension file_fdw can only be created by a superuser, and the admin user app_admin is not one",
    );
    contains(&err, "psql -d template1 -c 'CREATE EXTENSION IF NOT EXISTS \"file_fdw\" SCHEMA public'");
    let template1 = server.admin_url("template1");
    let owner = || postgres::Client::connect(&template1, postgres::NoTls).unwrap();
    // The session ends at once: PostgreSQL copies template1 only when nobody is connected to it.
    owner().batch_execute("CREATE EXTENSION IF NOT EXISTS file_fdw SCHEMA public").unwrap();

    p.ok(&["setup"]);
    let (_, err) = p.ok_err(&["setup", "--branch", "feature"]);
    contains(&err, "as a copy of");
    p.ok(&["rollback", "--db", "shop", "--branch", "feature"]);
    p.ok(&["migrate", "--branch", "feature"]);
    let (out, _) = p.ok_err(&["backup", "--db", "shop"]);
    p.service_client("shop").batch_execute("DELETE FROM items").unwrap();
    p.ok(&["restore", out.trim(), "--db", "shop"]);
    let rows: i64 = p.service_client("shop").query_one("SELECT count(*) FROM items", &[]).unwrap().get(0);
    assert_eq!(rows, 1, "the restored row");
    p.ok(&["wipe", "--branch", "feature"]);
    contains(&p.ok_err(&["prune"]).1, "nothing to prune");
    p.ok(&["teardown"]);
    assert_eq!(p.databases_on_server(), Vec::<String>::new());
    let roles: i64 = server
        .admin()
        .query_one("SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)", &[&p.name])
        .unwrap()
        .get(0);
    assert_eq!(roles, 0, "teardown dropped the roles the admin made");
    owner().batch_execute("DROP EXTENSION file_fdw").unwrap();
}

#[test]
fn non_superuser_admin_on_postgres_15() {
    non_superuser_admin_on(None);
}

/// 16 changed CREATEROLE: the creator gets ADMIN OPTION on the roles it makes, not on every role.
#[test]
fn non_superuser_admin_on_postgres_18() {
    non_superuser_admin_on(Some(18));
}

/// The example services and their tests' per-test databases (copies of the templates made through
/// XTASK_ADMIN_URL) with a managed-style admin.
#[test]
fn non_superuser_admin_serves_the_example_services_and_their_per_test_databases() {
    let (_server, mut p) = managed_admin_project(None);
    let redis = crate::redis::ExternalRedis::start();
    p.set("XTASK_REDIS_URL", &redis.admin_url());
    crate::services::example_services_in(p, "external, admin without superuser");
}

/// An admin without CREATEDB, or without CREATEROLE, is told which attribute it lacks.
#[test]
fn a_missing_attribute_is_named() {
    let server = Project::new("native");
    server.ok(&["db-up"]);
    server
        .admin()
        .batch_execute(
            "CREATE ROLE xt_no_createdb LOGIN CREATEROLE PASSWORD 'x-pw-1'; \
             CREATE ROLE xt_no_createrole LOGIN CREATEDB PASSWORD 'x-pw-2'",
        )
        .unwrap();
    for (user, password, lacks) in
        [("xt_no_createdb", "x-pw-1", "CREATEDB"), ("xt_no_createrole", "x-pw-2", "CREATEROLE")]
    {
        let mut p = Project::new("external");
        p.use_server(&server);
        p.unset("XTASK_PASSWORD");
        p.set(
            "XTASK_DATABASE_URL",
            &format!("postgres://{user}:{password}@127.0.0.1:{}/postgres", server.port),
        );
        p.service("shop", "name = \"shop\"");
        let err = p.fails(&["setup"]);
        contains(&err, &format!("the admin user lacks {lacks}, which this tool needs"));
        contains(&err, &format!("`ALTER ROLE <admin user> {lacks}`"));
    }
}
