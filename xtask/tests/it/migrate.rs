//! Migrations and seeds against real servers, and interoperability with real sqlx.

use std::process::{Command, Stdio};

use crate::harness::{Project, contains};

const USERS: &str = "20240101000001";
const POSTS: &str = "20240101000002";
const TAGS: &str = "20240101000003";

impl Project {
    fn migration(&self, version: &str, slug: &str, up: &str, down: Option<&str>) {
        let dir = format!("migrations/{}", self.name);
        self.write(&format!("{dir}/{version}_{slug}.up.sql"), up);
        if let Some(down) = down {
            self.write(&format!("{dir}/{version}_{slug}.down.sql"), down);
        }
    }

    fn query_i64(&self, sql: &str) -> i64 {
        self.client("main").query_one(sql, &[]).unwrap().get(0)
    }

    fn recorded(&self) -> Vec<i64> {
        let rows =
            self.client("main").query("SELECT version FROM _sqlx_migrations ORDER BY version", &[]).unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    fn table_exists(&self, table: &str) -> bool {
        let sql =
            format!("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = '{table}'");
        self.query_i64(&sql) == 1
    }
}

fn with_three_migrations(engine: &str) -> Project {
    let p = Project::new(engine);
    write_three(&p);
    p
}

fn write_three(p: &Project) {
    p.migration(
        USERS,
        "users",
        "CREATE TABLE users (id bigint PRIMARY KEY, email text UNIQUE);",
        Some("DROP TABLE users;"),
    );
    p.migration(
        POSTS,
        "posts",
        "CREATE TABLE posts (id bigint PRIMARY KEY, user_id bigint REFERENCES users);\nCREATE INDEX ON posts (user_id);",
        Some("DROP TABLE posts;"),
    );
    p.migration(TAGS, "tags", "CREATE TYPE tag AS ENUM ('a', 'b');", None);
}

pub fn apply_reapply_rollback(engine: &str) {
    let p = with_three_migrations(engine);
    p.ok(&["setup"]);
    assert_eq!(p.recorded(), [20240101000001, 20240101000002, 20240101000003]);
    let (_, err) = p.ok_err(&["migrate"]);
    contains(&err, "up to date");
    let (out, err) = p.ok_err(&["migrate", "--check"]);
    assert!(out.is_empty() && err.is_empty(), "--check is silent: {out}{err}");

    // The newest has no down file: refused, nothing changed.
    let err = p.fails(&["rollback"]);
    contains(&err, &format!("{TAGS}_tags.up.sql"));
    contains(&err, "no down file");
    assert_eq!(p.recorded().len(), 3);

    p.write(&format!("migrations/{}/{TAGS}_tags.down.sql", p.name), "DROP TYPE tag;");
    p.ok(&["rollback"]);
    assert_eq!(p.recorded().len(), 2);
    p.ok(&["rollback", "--steps", "2"]);
    assert!(p.recorded().is_empty());
    assert!(!p.table_exists("users"));
    let (_, err) = p.ok_err(&["migrate"]);
    contains(&err, "applied 3 migration(s)");
    assert!(p.table_exists("posts"));
    let listing: serde_json::Value = serde_json::from_str(&p.ok(&["migrations", "--json"])).unwrap();
    let states: Vec<&str> =
        listing[&p.name].as_array().unwrap().iter().map(|m| m["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["applied", "applied", "applied"]);
}

pub fn edited_missing_and_out_of_order(engine: &str) {
    let p = with_three_migrations(engine);
    p.ok(&["setup"]);
    let users = format!("migrations/{}/{USERS}_users.up.sql", p.name);
    let original = std::fs::read_to_string(p.path().join(&users)).unwrap();
    p.write(&users, "CREATE TABLE users (id int);");
    let err = p.fails(&["migrate"]);
    contains(&err, &users);
    contains(&err, "changed");
    let out = p.run(&["migrate", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    contains(&String::from_utf8_lossy(&out.stderr), &users);
    p.write(&users, &original);

    // A file merged from another branch, older than the newest applied.
    p.migration("20231231000000", "older", "CREATE TABLE older (x int);", Some("DROP TABLE older;"));
    let err = p.fails(&["migrate"]);
    contains(&err, "20231231000000");
    contains(&err, TAGS);
    contains(&err, "--allow-out-of-order");
    p.ok(&["migrate", "--allow-out-of-order"]);
    assert!(p.table_exists("older"));

    // Switching to a checkout that lacks an applied migration: explained, with the ways out.
    std::fs::remove_file(p.path().join(format!("migrations/{}/{TAGS}_tags.up.sql", p.name))).unwrap();
    let err = p.fails(&["migrate"]);
    contains(&err, &format!("{TAGS} (tags)"));
    contains(&err, "rollback");
    contains(&err, "wipe");
    let listing = p.ok(&["migrations"]);
    contains(&listing, "missing");
}

pub fn failing_migration_leaves_nothing(engine: &str) {
    let p = with_three_migrations(engine);
    p.ok(&["setup"]);
    let broken = "CREATE TABLE half (x int);\nINSERT INTO half VALUES (1);\n\n-- a comment\nSELECT 1;\n\nSELECT * FROM no_such_table\n  WHERE true;\n";
    p.migration("20240101000004", "broken", broken, None);
    let err = p.fails(&["migrate"]);
    contains(&err, &format!("migrations/{}/20240101000004_broken.up.sql:7:15", p.name));
    contains(&err, "relation \"no_such_table\" does not exist");
    contains(&err, "7 | SELECT * FROM no_such_table");
    assert!(!p.table_exists("half"), "the failed migration left a table behind");
    assert_eq!(p.recorded().len(), 3);

    // A run-time error carries no position: the failing statement is still found.
    let duplicate = "INSERT INTO users VALUES (1, 'x');\n\n  INSERT INTO users VALUES (1, 'y');\n";
    p.migration("20240101000004", "broken", duplicate, None);
    let err = p.fails(&["migrate"]);
    contains(&err, "20240101000004_broken.up.sql:3:3");
    contains(&err, "duplicate key");
    assert_eq!(p.query_i64("SELECT count(*) FROM users"), 0);

    let hinted = "CREATE TABLE t (x int);\nSELECT x FROM t GROUP BY 1 HAVING y > 0;";
    p.migration("20240101000004", "broken", hinted, None);
    let err = p.fails(&["migrate"]);
    contains(&err, "20240101000004_broken.up.sql:2:");
}

pub fn no_transaction_index_concurrently(engine: &str) {
    let p = with_three_migrations(engine);
    p.ok(&["setup"]);
    let up = "-- no-transaction\nCREATE INDEX CONCURRENTLY users_email_lower ON users (lower(email));\n\
              CREATE INDEX CONCURRENTLY posts_id_desc ON posts (id DESC);\n";
    p.migration(
        "20240101000004",
        "concurrent",
        up,
        Some("DROP INDEX users_email_lower; DROP INDEX posts_id_desc;"),
    );
    p.ok(&["migrate"]);
    assert_eq!(
        p.query_i64(
            "SELECT count(*) FROM pg_indexes WHERE indexname IN ('users_email_lower', 'posts_id_desc')"
        ),
        2
    );
    assert_eq!(p.recorded().len(), 4);
}

pub fn concurrent_migrate(engine: &str) {
    let p = Project::new(engine);
    p.ok(&["setup"]);
    for n in 1..=30 {
        p.migration(
            &format!("202401010{n:05}"),
            &format!("t{n}"),
            &format!("CREATE TABLE t{n} (id int); INSERT INTO t{n} VALUES ({n}); SELECT pg_sleep(0.01);"),
            None,
        );
    }
    let children: Vec<_> = (0..8)
        .map(|_| {
            let mut command = Command::new(crate::harness::XTASK);
            command.arg("migrate").current_dir(p.path()).stderr(Stdio::piped());
            command.envs(p.env.iter().map(|(k, v)| (k, v)));
            command.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(p.recorded().len(), 30);
    assert_eq!(p.query_i64("SELECT count(*) FROM t30"), 1);
}

pub fn seeds(engine: &str) {
    let p = with_three_migrations(engine);
    p.write(
        &format!("seeds/{}/01_users.sql", p.name),
        "INSERT INTO users VALUES (1, 'a@example.com') ON CONFLICT DO NOTHING;",
    );
    p.write(
        &format!("seeds/{}/02_posts.sql", p.name),
        "INSERT INTO posts VALUES (10, 1) ON CONFLICT DO NOTHING;",
    );
    p.ok(&["setup"]);
    assert_eq!(p.query_i64("SELECT count(*) FROM posts"), 1);
    assert_eq!(p.status("main")["databases"][0]["seeds"], "current");
    p.client("main").batch_execute("DELETE FROM posts").unwrap();
    p.ok(&["setup"]);
    assert_eq!(p.query_i64("SELECT count(*) FROM posts"), 0, "setup seeds only new databases");
    p.ok(&["seed"]);
    assert_eq!(p.query_i64("SELECT count(*) FROM posts"), 1);

    p.write(
        &format!("seeds/{}/01_users.sql", p.name),
        "INSERT INTO users VALUES (2, 'b@example.com');\nINSERT INTO posts VALUES (11, 2);",
    );
    assert_eq!(p.status("main")["databases"][0]["seeds"], "changed");
    p.write(
        &format!("seeds/{}/02_posts.sql", p.name),
        "INSERT INTO posts VALUES (12, 1);\n\nINSERT INTO posts VALUES (13, 999);",
    );
    let err = p.fails(&["seed"]);
    contains(&err, &format!("seeds/{}/02_posts.sql:3:", p.name));
    contains(&err, "foreign key");
    assert_eq!(p.query_i64("SELECT count(*) FROM users"), 1, "the first seed was rolled back too");
    assert_eq!(p.query_i64("SELECT count(*) FROM posts"), 1);
}

fn sqlx_migrator(p: &Project) -> sqlx::migrate::Migrator {
    let dir = p.path().join("migrations").join(&p.name);
    runtime().block_on(sqlx::migrate::Migrator::new(dir)).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub fn sqlx_interop(engine: &str) {
    // xtask applies, sqlx agrees that nothing is left and that every checksum matches.
    let p = with_three_migrations(engine);
    p.ok(&["setup"]);
    let url = p.endpoint("main");
    let migrator = sqlx_migrator(&p);
    runtime().block_on(async {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        migrator.run(&pool).await.unwrap();
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
        assert_eq!(count, 3);
        // And sqlx refuses an edited file that xtask applied, so the checksums were really compared.
        pool.close().await;
    });
    let users = format!("migrations/{}/{USERS}_users.up.sql", p.name);
    let original = std::fs::read_to_string(p.path().join(&users)).unwrap();
    p.write(&users, "-- edited\nCREATE TABLE users (id int);");
    let edited = sqlx_migrator(&p);
    runtime().block_on(async {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        assert!(edited.run(&pool).await.is_err(), "sqlx must see xtask's checksum");
        pool.close().await;
    });
    p.write(&users, &original);

    // sqlx applies to a database xtask made empty; xtask then sees it all applied, and rolls back.
    let q = Project::new(engine);
    q.ok(&["setup"]);
    write_three(&q);
    let url = q.endpoint("main");
    let migrator = sqlx_migrator(&q);
    runtime().block_on(async {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        migrator.run(&pool).await.unwrap();
        pool.close().await;
    });
    let (out, err) = q.ok_err(&["migrate", "--check"]);
    assert!(out.is_empty() && err.is_empty(), "{out}{err}");
    q.write(&format!("migrations/{}/{TAGS}_tags.down.sql", q.name), "DROP TYPE tag;");
    q.ok(&["rollback", "--steps", "2"]);
    assert_eq!(q.recorded(), [20240101000001]);
}

/// The advice for a changed or missing applied migration depends on what git has: a committed
/// file is restored with git, an uncommitted one cannot be, and a file deleted on this branch is
/// not one "from another branch".
#[test]
fn advice_tells_committed_uncommitted_and_deleted_files_apart() {
    let p = Project::new("native");
    let commit = |p: &Project| {
        p.git(&["add", "-A"]);
        p.git(&["-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "migrations"]);
    };
    p.write("migrations/20240101000001_kept.up.sql", "CREATE TABLE kept (id int);");
    p.write("migrations/20240101000001_kept.down.sql", "DROP TABLE kept;");
    commit(&p);
    p.write("migrations/20240101000002_draft.up.sql", "CREATE TABLE draft (id int);");
    p.write("migrations/20240101000002_draft.down.sql", "DROP TABLE draft;");
    p.ok(&["setup"]);

    p.write("migrations/20240101000002_draft.up.sql", "CREATE TABLE draft (id bigint);");
    let err = p.fails(&["migrate"]);
    contains(
        &err,
        "20240101000002_draft.up.sql: applied as version 20240101000002, but the file changed since, and git has no committed copy",
    );
    p.write("migrations/20240101000002_draft.up.sql", "CREATE TABLE draft (id int);");

    for file in ["up", "down"] {
        std::fs::remove_file(p.path().join(format!("migrations/20240101000001_kept.{file}.sql"))).unwrap();
    }
    let err = p.fails(&["migrate"]);
    contains(
        &err,
        "deleted from this checkout although this branch's last commit has it: restore it (git checkout -- migrations/20240101000001_kept.up.sql)",
    );
    assert!(!err.contains("came from another branch"), "{err}");
}
