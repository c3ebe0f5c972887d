//! Services: a database per service, owned by its own least-privilege login role, with its
//! extensions, migrations and seeds, and one URL per service in `.env`.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Project, contains};

/// Two services like the example ones: accounts (with extensions) and notes.
pub fn two_services(engine: &str) -> Project {
    let p = Project::new(engine);
    p.service("accounts", "name = \"accounts\"\nextensions = [\"pgcrypto\", \"citext\"]");
    p.service("notes", "name = \"notes\"");
    p.write(
        "migrations/accounts/20240101000001_users.up.sql",
        "CREATE TABLE users (id int PRIMARY KEY, email citext NOT NULL UNIQUE, \
         hash text NOT NULL DEFAULT crypt('secret', gen_salt('bf', 4)));",
    );
    p.write(
        "migrations/notes/20240101000001_notes.up.sql",
        "CREATE TABLE notes (id int PRIMARY KEY, account_id int NOT NULL, body text NOT NULL);",
    );
    p.write("seeds/accounts/01_users.sql", "INSERT INTO users (id, email) VALUES (1, 'Alice@example.com');");
    p.write("seeds/notes/01_notes.sql", "INSERT INTO notes VALUES (1, 1, 'hello');");
    p
}

fn url(p: &Project, db: &str, branch: &str) -> String {
    let url = p.ok(&["db-endpoint", "--db", db, "--branch", branch]);
    url.trim().to_owned()
}

/// The same login on another database.
fn on_db(url: &str, db: &str) -> String {
    format!("{}/{db}", url.rsplit_once('/').unwrap().0)
}

fn connect(url: &str) -> Result<postgres::Client, postgres::Error> {
    postgres::Client::connect(url, postgres::NoTls)
}

fn sqlstate(error: &postgres::Error) -> String {
    error.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

/// Each role owns its database and nothing else: it cannot reach the other service's database,
/// create databases or roles, or read the other service's tables.
pub fn least_privilege(engine: &str) {
    let p = two_services(engine);
    let (_, err) = p.ok_err(&["setup"]);
    let accounts_db = format!("{}_accounts", p.name);
    let notes_db = format!("{}_notes", p.name);
    contains(&err, &format!("created database {accounts_db}"));
    contains(&err, &format!("created login role {}_accounts", p.name));

    let accounts_url = url(&p, "accounts", "main");
    let notes_url = url(&p, "notes", "main");
    assert!(accounts_url.contains(&format!("//{}_accounts:", p.name)), "{accounts_url}");
    assert!(accounts_url.ends_with(&format!("/{accounts_db}")), "{accounts_url}");

    let mut accounts = connect(&accounts_url).unwrap();
    let email: String = accounts.query_one("SELECT email::text FROM users WHERE id = 1", &[]).unwrap().get(0);
    assert_eq!(email, "Alice@example.com", "seeded as the role");
    let owner: String = accounts
        .query_one("SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = 'users'", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner, format!("{}_accounts", p.name), "migrations ran as the service's role");

    let mut notes = connect(&notes_url).unwrap();
    let (count,): (i64,) = (notes.query_one("SELECT count(*) FROM notes", &[]).unwrap().get(0),);
    assert_eq!(count, 1);

    // notes' role on accounts' database: no CONNECT.
    let notes_on_accounts = on_db(&notes_url, &accounts_db);
    let refused = connect(&notes_on_accounts).err().expect("notes must not connect to accounts");
    assert_eq!(sqlstate(&refused), "42501", "{refused}");
    // accounts' role cannot read notes' tables, even when it reaches the database as the admin grants.
    let accounts_on_notes = on_db(&accounts_url, &notes_db);
    let refused = connect(&accounts_on_notes).err().expect("accounts must not connect to notes");
    assert_eq!(sqlstate(&refused), "42501", "{refused}");
    let mut admin_on_notes = connect(&p.admin_url(&notes_db)).unwrap();
    admin_on_notes
        .batch_execute(&format!("GRANT CONNECT ON DATABASE \"{notes_db}\" TO \"{}_accounts\"", p.name))
        .unwrap();
    let mut accounts_in_notes = connect(&accounts_on_notes).unwrap();
    let error = accounts_in_notes.query("SELECT * FROM notes", &[]).unwrap_err();
    assert_eq!(sqlstate(&error), "42501", "{error}");

    // `connect --db` opens psql as the service's role on its database.
    let who =
        p.ok(&["connect", "--db", "notes", "--", "-Atc", "SELECT current_user || ' ' || current_database()"]);
    assert_eq!(who.trim(), format!("{}_notes {notes_db}", p.name));

    for (sql, what) in [
        ("CREATE DATABASE sneaky", "create a database"),
        ("CREATE ROLE sneaky", "create a role"),
        ("ALTER ROLE CURRENT_USER CREATEDB", "grant itself CREATEDB"),
    ] {
        let error = notes.batch_execute(sql).expect_err(what);
        assert_eq!(sqlstate(&error), "42501", "{what}: {error}");
    }
    let role_flags: (bool, bool, bool) = {
        let row = notes
            .query_one(
                "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(role_flags, (false, false, false));
}

/// Declared extensions exist after setup; one the server lacks is an error naming it and its
/// provider, with nothing half made.
pub fn extensions(engine: &str) {
    let p = two_services(engine);
    p.ok(&["setup"]);
    let mut accounts = connect(&url(&p, "accounts", "main")).unwrap();
    let rows = accounts.query("SELECT extname::text FROM pg_extension ORDER BY 1", &[]).unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(names.contains(&"pgcrypto".into()) && names.contains(&"citext".into()), "{names:?}");
    let mut notes = connect(&url(&p, "notes", "main")).unwrap();
    let rows = notes.query("SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql'", &[]).unwrap();
    assert!(rows.is_empty(), "notes declared no extension");

    // A new declared extension is enabled by the next setup.
    p.service("notes", "name = \"notes\"\nextensions = [\"pg_trgm\"]");
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "enabled extension(s) pg_trgm");

    p.service("notes", "name = \"notes\"\nextensions = [\"postgis\"]");
    let err = p.fails(&["setup", "--branch", "geo"]);
    contains(&err, "extension `postgis` is not available on this server");
    contains(&err, "postgresql-15-postgis-3");
    contains(&err, "services/notes/Cargo.toml");
    p.service("notes", "name = \"notes\"\nextensions = [\"no_such_extension\"]");
    let err = p.fails(&["setup", "--branch", "geo"]);
    contains(&err, "extension `no_such_extension` is not available");
    // Its template could not be built, so the branch database was not made at all.
    let status = p.status("geo");
    let notes = status["databases"].as_array().unwrap().iter().find(|d| d["database"] == "notes").unwrap();
    assert_eq!(notes["exists"], false, "{status}");
    // Fixed: the next setup makes it, seeds included.
    p.service("notes", "name = \"notes\"");
    let (_, err) = p.ok_err(&["setup", "--branch", "geo"]);
    contains(&err, &format!("created database {}_notes_geo as a copy of", p.name));
    let status = p.status("geo");
    let notes = status["databases"].as_array().unwrap().iter().find(|d| d["database"] == "notes").unwrap();
    assert_eq!((notes["pending_migrations"].as_i64(), notes["seeds"].as_str()), (Some(0), Some("current")));
}

/// The role vanished while its password stayed on file (dropped by hand, a new server for the
/// same data directory): setup makes it again instead of failing, and leaves no scratch database.
pub fn role_dropped_by_hand(engine: &str) {
    let p = two_services(engine);
    p.ok(&["setup"]);
    p.ok(&["wipe"]);
    // Its templates are the role's too: they go first, as the server would insist.
    for template in p.templates_on_server() {
        p.admin().batch_execute(&format!("DROP DATABASE \"{template}\"")).unwrap();
    }
    p.admin().batch_execute(&format!("DROP ROLE \"{}_notes\"", p.name)).unwrap();
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, &format!("created login role {}_notes", p.name));
    connect(&url(&p, "notes", "main")).unwrap();
    let scratch: i64 = p
        .admin()
        .query_one("SELECT count(*) FROM pg_database WHERE datname LIKE '\\_xtask\\_new\\_%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(scratch, 0);
}

/// Two setups at once that both find the role's password refused agree on one new password.
pub fn concurrent_password_renewal(engine: &str) {
    let p = two_services(engine);
    p.ok(&["setup"]);
    p.admin().batch_execute(&format!("ALTER ROLE \"{}_notes\" PASSWORD 'reset-elsewhere'", p.name)).unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let mut command = std::process::Command::new(crate::harness::XTASK);
            command.arg("setup").current_dir(p.path()).envs(p.env.iter().map(|(k, v)| (k, v)));
            command.stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    connect(&url(&p, "notes", "main")).unwrap();
}

/// Roles are per project, reused by every branch; wipe leaves them and the other branch's
/// databases; teardown removes them.
pub fn two_branches(engine: &str) {
    let p = two_services(engine);
    p.ok(&["setup"]);
    let (_, err) = p.ok_err(&["setup", "--branch", "feature/x"]);
    assert!(!err.contains("login role"), "the second branch reuses the roles:\n{err}");
    let ours = p.databases_on_server();
    assert_eq!(ours.len(), 4, "{ours:?}");
    assert_eq!(
        url(&p, "accounts", "main").split('@').next(),
        url(&p, "accounts", "feature/x").split('@').next()
    );

    let mut feature = connect(&url(&p, "notes", "feature/x")).unwrap();
    feature.batch_execute("INSERT INTO notes VALUES (2, 1, 'only on feature/x')").unwrap();
    drop(feature);
    p.ok(&["wipe", "--branch", "feature/x"]);
    let left = p.databases_on_server();
    assert_eq!(left, [format!("{}_accounts", p.name), format!("{}_notes", p.name)]);
    let mut main = connect(&url(&p, "notes", "main")).unwrap();
    let count: i64 = main.query_one("SELECT count(*) FROM notes", &[]).unwrap().get(0);
    assert_eq!(count, 1, "main's data is untouched");
    drop(main);
    assert_eq!(roles(&p).len(), 2, "wipe keeps the roles");

    p.ok(&["setup", "--branch", "feature/x"]);
    assert_eq!(p.databases_on_server().len(), 4);
    let mut feature = connect(&url(&p, "notes", "feature/x")).unwrap();
    let count: i64 = feature.query_one("SELECT count(*) FROM notes", &[]).unwrap().get(0);
    assert_eq!(count, 1, "a re-made branch database is migrated and seeded afresh");
}

fn roles(p: &Project) -> Vec<String> {
    let rows = p
        .admin()
        .query("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1", &[&p.name])
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// `.env` gets DATABASE_URL and one URL per service; every other line stays byte for byte. The
/// passwords are only in `.env` and the 0600 credentials file, never in setup's output.
pub fn env_file_and_secrets(engine: &str) {
    let p = two_services(engine);
    let mine = "# my settings\r\nRUST_LOG=debug\n\nexport API_KEY='x=y' # keep\nDATABASE_URL=old\n  weird line without equals\n";
    p.write(".env", mine);
    let (out, err) = p.ok_err(&["setup"]);
    let env = std::fs::read_to_string(p.path().join(".env")).unwrap();
    let accounts = url(&p, "accounts", "main");
    let notes = url(&p, "notes", "main");
    let expected = mine.replace("DATABASE_URL=old", &format!("DATABASE_URL={accounts}"))
        + &format!("ACCOUNTS_DATABASE_URL={accounts}\nNOTES_DATABASE_URL={notes}\n");
    let added =
        env.strip_prefix(&expected).unwrap_or_else(|| panic!("{env:?} should start with {expected:?}"));
    let added: Vec<&str> = added.lines().map(|l| l.split_once('=').unwrap().0).collect();
    assert_eq!(added, ["XTASK_ADMIN_URL", "ACCOUNTS_TEMPLATE_DATABASE", "NOTES_TEMPLATE_DATABASE"]);

    let credentials = p.data_dir().join(".xtask-credentials.toml");
    let mode = std::fs::metadata(&credentials).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    for service_url in [&accounts, &notes] {
        let password = service_url.split(':').nth(2).unwrap().split('@').next().unwrap();
        assert_eq!(password.len(), 32, "{service_url}");
        assert!(!out.contains(password) && !err.contains(password), "setup printed a password:\n{err}");
        assert!(std::fs::read_to_string(&credentials).unwrap().contains(password));
        let status = p.ok(&["db-status", "--json"]);
        assert!(!status.contains(password));
    }
    // A second run changes nothing.
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "nothing to do");
    assert_eq!(std::fs::read_to_string(p.path().join(".env")).unwrap(), env);
}

/// The server forgot the role's password (a rebuilt server, a reset): setup gives it a new one,
/// and an unlabelled role of the same name is never taken over.
pub fn roles_heal_and_are_never_taken_over(engine: &str) {
    let p = two_services(engine);
    p.ok(&["setup"]);
    let before = url(&p, "notes", "main");
    p.admin()
        .batch_execute(&format!("ALTER ROLE \"{}_notes\" PASSWORD 'changed-elsewhere'", p.name))
        .unwrap();
    assert!(connect(&before).is_err());
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, &format!("gave login role {}_notes a new password", p.name));
    let after = url(&p, "notes", "main");
    assert_ne!(before, after);
    connect(&after).unwrap();
    assert!(std::fs::read_to_string(p.path().join(".env")).unwrap().contains(&after));

    p.admin().batch_execute(&format!("CREATE ROLE \"{}_intruder\" LOGIN", p.name)).unwrap();
    p.service("intruder", "name = \"intruder\"");
    let err = p.fails(&["setup"]);
    contains(
        &err,
        &format!("role {}_intruder already exists on the server but was not created by xtask", p.name),
    );
    p.admin().batch_execute(&format!("DROP ROLE \"{}_intruder\"", p.name)).unwrap();
}

/// `reads = [...]` lets one service SELECT another's tables, including tables added later, and
/// nothing more.
pub fn declared_reads(engine: &str) {
    let p = two_services(engine);
    p.service("reports", "name = \"reports\"\nreads = [\"notes\"]");
    p.ok(&["setup"]);
    let reports = url(&p, "reports", "main");
    let notes_db = format!("{}_notes", p.name);
    let on_notes = on_db(&reports, &notes_db);
    let mut client = connect(&on_notes).unwrap();
    let count: i64 = client.query_one("SELECT count(*) FROM notes", &[]).unwrap().get(0);
    assert_eq!(count, 1);
    let error = client.batch_execute("INSERT INTO notes VALUES (9, 9, 'no')").unwrap_err();
    assert_eq!(sqlstate(&error), "42501");
    drop(client);

    p.write("migrations/notes/20240101000002_tags.up.sql", "CREATE TABLE tags (name text);");
    p.ok(&["setup"]);
    let mut client = connect(&on_notes).unwrap();
    client.query("SELECT * FROM tags", &[]).unwrap();
    // accounts declared no reads.
    let accounts_on_notes = on_db(&url(&p, "accounts", "main"), &notes_db);
    assert!(connect(&accounts_on_notes).is_err());
}

/// The repository's own example services: `setup` on this engine (its own project, port and
/// env file, so the developer's `.env` and databases are untouched), then their tests with the
/// URLs setup wrote.
pub fn example_services(engine: &str) {
    example_services_in(Project::new(engine), engine);
}

/// This repository's example services set up by `p`, then their own tests (each test on a fresh
/// copy of its service's template, through XTASK_ADMIN_URL) run against what setup wrote.
pub fn example_services_in(mut p: Project, engine: &str) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let env_file = p.path().join("services.env");
    p.set("XTASK_ENV_FILE", env_file.to_str().unwrap());
    p.set("XTASK_BRANCH", "main");
    let out = p.run_in(repo, &["setup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "setup of the example services failed:\n{err}");
    contains(&err, "with extension(s) pgcrypto, citext");
    // Read as a dotenv loader reads it: a value with `?` in it (an external server's sslmode) is quoted.
    let vars: Vec<(String, String)> =
        dotenvy::from_path_iter(&env_file).unwrap().map(Result::unwrap).collect();
    let keys: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "DATABASE_URL",
            "ACCOUNTS_DATABASE_URL",
            "NOTES_DATABASE_URL",
            "XTASK_ADMIN_URL",
            "ACCOUNTS_TEMPLATE_DATABASE",
            "NOTES_TEMPLATE_DATABASE",
            "REDIS_URL",
            "REDIS_PREFIX",
            "NOTES_REDIS_URL",
            "NOTES_REDIS_PREFIX"
        ]
    );

    let tests = std::process::Command::new(env!("CARGO"))
        .args(["test", "--locked", "-p", "accounts", "-p", "notes", "-p", "testdb"])
        .current_dir(repo)
        .envs(vars.iter().cloned())
        .output()
        .unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&tests.stdout), String::from_utf8_lossy(&tests.stderr));
    assert!(tests.status.success(), "the example services' tests failed on {engine}:\n{report}");
    assert!(report.contains("test result: ok"), "{report}");
    // The seeds went in as each service's role, and sqlx's migrator found nothing to do.
    let mut notes = connect(vars_url(&vars, "NOTES_DATABASE_URL")).unwrap();
    let applied: i64 = notes.query_one("SELECT count(*) FROM _sqlx_migrations", &[]).unwrap().get(0);
    let ups = std::fs::read_dir(repo.join("migrations/notes"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(".up.sql"))
        .count() as i64;
    assert_eq!(applied, ups, "each notes migration recorded once");
}

fn vars_url<'a>(vars: &'a [(String, String)], key: &str) -> &'a str {
    vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap()
}
