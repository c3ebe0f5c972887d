//! `prepare` from a declared schema, and `schema --check` / `--write`.
//!
//! The corpus: for each change from schema A to schema B, a project whose migrations make A and
//! whose schema.sql says B. `prepare` must write a migration; applied by `setup` (the real runner,
//! as the service's role), the migrations must then produce B exactly; and its down, applied after
//! it, must give back A exactly. "Exactly" is `schema --check`, which compares both catalogs.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Project, XTASK, contains};

const START: &str = "migrations/20260101000000_start.up.sql";
const DECLARED: &str = "migrations/schema.sql";

/// Runs one corpus case and returns the generated up and down.
pub fn round_trip(from: &str, to: &str) -> (String, String) {
    round_trip_with(from, to, Dump::BothWays)
}

/// Which directions of a round trip pg_dump must see exactly.
#[derive(PartialEq)]
pub enum Dump {
    BothWays,
    /// The down gives back the starting schema by the catalogs, and pg_dump shows a column a
    /// child declared as its own where the start has it inherited only (no SQL can make a merged
    /// column inherited-only again; INHERIT and a parent's ADD COLUMN both merge).
    UpOnly,
}

pub fn round_trip_with(from: &str, to: &str, dump: Dump) -> (String, String) {
    // On the shared server: what is checked is prepare's SQL, the same on every engine.
    let p = crate::harness::project_on(crate::harness::shared_server());
    p.write(START, from);
    p.write(DECLARED, to);
    let (out, err) = p.ok_err(&["prepare", "the change"]);
    let files: Vec<&str> = out.lines().collect();
    assert_eq!(files.len(), 2, "prepare wrote no migration:\n{err}");
    let read = |file: &str| std::fs::read_to_string(p.path().join(file)).unwrap();
    let (up, down) = (read(files[0]), read(files[1]));
    assert!(files[0].ends_with("_the_change.up.sql") && files[1].ends_with("_the_change.down.sql"));

    // Up: the migrations, applied to the branch database by setup, now make the declared schema,
    // by the catalogs and by pg_dump.
    p.ok(&["setup"]);
    let (_, err) = p.ok_err(&["schema", "--check"]);
    contains(&err, "produce migrations/schema.sql exactly");
    assert_dumps_as(&p, to, &format!("after the up:\n{up}"));

    // Down: run after the up as one more migration, it gives back the starting schema.
    p.write("migrations/20990101000000_undo.up.sql", &down);
    p.write(DECLARED, from);
    let (_, err) = p.ok_err(&["schema", "--check"]);
    contains(&err, "produce migrations/schema.sql exactly");

    // And `rollback` runs the same down on the branch database.
    std::fs::remove_file(p.path().join("migrations/20990101000000_undo.up.sql")).unwrap();
    p.ok(&["rollback"]);
    if dump == Dump::BothWays {
        assert_dumps_as(&p, from, &format!("after the down:\n{down}"));
    }
    p.ok(&["migrate"]);
    p.ok(&["teardown"]);
    (up, down)
}

/// The branch database dumps as one made from `sql` does.
fn assert_dumps_as(p: &Project, sql: &str, when: &str) {
    let made_from_sql = format!("{}_dump", p.name);
    let mut admin = p.admin();
    admin.batch_execute(&format!("CREATE DATABASE {made_from_sql}")).unwrap();
    let made =
        postgres::Client::connect(&p.admin_url(&made_from_sql), postgres::NoTls).unwrap().batch_execute(sql);
    let branch_dump = schema_dump(p.ok(&["db-endpoint"]).trim());
    let expected = schema_dump(&p.admin_url(&made_from_sql));
    admin.batch_execute(&format!("DROP DATABASE {made_from_sql}")).unwrap();
    made.unwrap();
    assert_eq!(branch_dump, expected, "pg_dump --schema-only differs {when}");
}

/// `pg_dump --schema-only` of a database, without what differs between any two databases (owners,
/// the migration record, pg_dump's own header and session lines), the columns of each CREATE TABLE
/// sorted (PostgreSQL cannot reorder columns, so a column added by a migration comes last).
pub fn schema_dump(url: &str) -> String {
    let config: postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(host) => host.clone(),
        postgres::config::Host::Unix(path) => path.display().to_string(),
    };
    let password = String::from_utf8(config.get_password().unwrap_or_default().to_vec()).unwrap();
    // XTASK_TEST_PG_DUMP: a pg_dump as new as the server (with XTASK_TEST_POSTGRES).
    let out = Command::new(std::env::var("XTASK_TEST_PG_DUMP").unwrap_or_else(|_| "pg_dump".into()))
        .args(["--schema-only", "--no-owner", "--exclude-table=public._sqlx_migrations", "--host", &host])
        .args(["--port", &config.get_ports()[0].to_string(), "--username", config.get_user().unwrap()])
        .args(["--dbname", config.get_dbname().unwrap()])
        .env("PGPASSWORD", password)
        .output()
        .expect("pg_dump runs (`cargo xtask ci --provision` installs it)");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = Vec::new();
    let mut columns: Option<Vec<String>> = None;
    for line in text.lines() {
        let noise = line.is_empty()
            || line.starts_with("--")
            || line.starts_with("SET ")
            || line.starts_with("SELECT pg_catalog.set_config")
            || line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict");
        if noise {
            continue;
        }
        // Storage parameters mean the same in any order; pg_dump keeps the order they were set in.
        if let Some(options) = line.strip_prefix("WITH (").and_then(|l| l.strip_suffix(");")) {
            let mut options: Vec<&str> = options.split(", ").collect();
            options.sort_unstable();
            lines.push(format!("WITH ({});", options.join(", ")));
            continue;
        }
        match &mut columns {
            Some(list) if line.starts_with(')') => {
                list.sort();
                lines.append(list);
                lines.push(line.to_owned());
                columns = None;
            }
            Some(list) => list.push(line.trim_end_matches(',').to_owned()),
            None => {
                lines.push(line.to_owned());
                if line.starts_with("CREATE TABLE ") && line.ends_with('(') {
                    columns = Some(Vec::new());
                }
            }
        }
    }
    lines.join("\n")
}

macro_rules! corpus {
    ($($name:ident: $from:expr => $to:expr;)*) => {
        mod round_trip {
            $(#[test] fn $name() { super::round_trip($from, $to); })*
        }
    };
}

corpus! {
    table_added:
        "CREATE TABLE a (id int PRIMARY KEY);" =>
        "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id bigint PRIMARY KEY, name text NOT NULL);";
    table_dropped:
        "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int, note text);" =>
        "CREATE TABLE a (id int PRIMARY KEY);";
    schema_with_tables_added:
        "CREATE TABLE a (id int);" =>
        "CREATE TABLE a (id int); CREATE SCHEMA billing; CREATE TABLE billing.invoice (id int PRIMARY KEY, a_id int);";
    extension_with_index_added:
        "CREATE TABLE doc (id int, body text);" =>
        "CREATE EXTENSION pg_trgm; CREATE TABLE doc (id int, body text);
         CREATE INDEX doc_body_trgm ON doc USING gin (body gin_trgm_ops);";
    extension_created_at_its_declared_version:
        "CREATE TABLE t (id int);" =>
        "CREATE EXTENSION citext VERSION '1.5'; CREATE TABLE t (id int, email citext);";
    extension_version_updated_and_back:
        "CREATE EXTENSION pg_trgm VERSION '1.5'; CREATE TABLE doc (body text);" =>
        "CREATE EXTENSION pg_trgm VERSION '1.6'; CREATE TABLE doc (body text);";
    enum_type_added:
        "CREATE TABLE t (id int);" =>
        "CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE TABLE t (id int, m mood DEFAULT 'happy');";
    enum_value_added_in_the_middle:
        "CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE TABLE t (m mood);" =>
        "CREATE TYPE mood AS ENUM ('sad', 'meh', 'happy', 'ecstatic'); CREATE TABLE t (m mood);";
    enum_value_removed_rebuilds_the_type:
        "CREATE TYPE mood AS ENUM ('sad', 'meh', 'happy');
         CREATE TABLE t (m mood DEFAULT 'meh', ms mood[]);
         CREATE INDEX t_happy ON t (m) WHERE m = 'happy';
         CREATE FUNCTION is_sad(x mood) RETURNS boolean LANGUAGE sql AS $$ SELECT x = 'sad' $$;" =>
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE t (m mood DEFAULT 'sad', ms mood[]);
         CREATE INDEX t_happy ON t (m) WHERE m = 'happy';
         CREATE FUNCTION is_sad(x mood) RETURNS boolean LANGUAGE sql AS $$ SELECT x = 'sad' $$;";
    standalone_sequence_added:
        "CREATE TABLE t (id int);" =>
        "CREATE SEQUENCE ticket_no AS integer START WITH 1000 INCREMENT BY 10 CACHE 5;
         CREATE TABLE t (id int DEFAULT nextval('ticket_no'));";
    sequence_options_changed:
        "CREATE SEQUENCE s INCREMENT BY 1 MAXVALUE 1000;" =>
        "CREATE SEQUENCE s INCREMENT BY 5 MAXVALUE 100000 CYCLE;";
    serial_column_added:
        "CREATE TABLE t (name text);" =>
        "CREATE TABLE t (name text, id serial);";
    column_added_not_null_with_default:
        "CREATE TABLE t (id int);" =>
        "CREATE TABLE t (id int, created_at timestamptz NOT NULL DEFAULT now(), flag boolean DEFAULT false);";
    column_dropped:
        "CREATE TABLE t (id int, legacy text, other int);" =>
        "CREATE TABLE t (id int, other int);";
    column_type_widened:
        "CREATE TABLE t (id int PRIMARY KEY, n smallint, label varchar(20));" =>
        "CREATE TABLE t (id bigint PRIMARY KEY, n bigint, label text);";
    column_type_narrowed:
        "CREATE TABLE t (code text, amount numeric);" =>
        "CREATE TABLE t (code varchar(8), amount integer);";
    column_nullability_changed:
        "CREATE TABLE t (a int NOT NULL, b int);" =>
        "CREATE TABLE t (a int, b int NOT NULL);";
    column_default_changed:
        "CREATE TABLE t (status text DEFAULT 'new', n int);" =>
        "CREATE TABLE t (status text DEFAULT 'draft', n int DEFAULT 0);";
    identity_added:
        "CREATE TABLE t (id int NOT NULL, name text);" =>
        "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY, name text);";
    identity_kind_changed:
        "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY);" =>
        "CREATE TABLE t (id bigint GENERATED BY DEFAULT AS IDENTITY);";
    generated_column_added:
        "CREATE TABLE t (w int, h int);" =>
        "CREATE TABLE t (w int, h int, area int GENERATED ALWAYS AS (w * h) STORED);";
    generated_expression_changed:
        "CREATE TABLE t (w int, h int, area int GENERATED ALWAYS AS (w * h) STORED);" =>
        "CREATE TABLE t (w int, h int, area int GENERATED ALWAYS AS (w * h * 2) STORED);";
    collation_changed:
        "CREATE TABLE t (name text);" =>
        "CREATE TABLE t (name text COLLATE \"C\");";
    primary_key_added:
        "CREATE TABLE t (id int NOT NULL, v text);" =>
        "CREATE TABLE t (id int NOT NULL PRIMARY KEY, v text);";
    unique_constraint_added:
        "CREATE TABLE t (a int, b int);" =>
        "CREATE TABLE t (a int, b int, CONSTRAINT t_a_b UNIQUE (a, b));";
    check_constraint_changed:
        "CREATE TABLE t (age int CONSTRAINT adult CHECK (age >= 18));" =>
        "CREATE TABLE t (age int CONSTRAINT adult CHECK (age >= 21 AND age < 200));";
    foreign_key_to_a_new_table:
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id int);" =>
        "CREATE TABLE customers (id int PRIMARY KEY, name text);
         CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers (id));";
    foreign_key_action_changed:
        "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (p_id int REFERENCES p ON DELETE CASCADE);" =>
        "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (p_id int REFERENCES p ON DELETE SET NULL);";
    foreign_key_follows_a_key_type_change:
        "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (p_id int REFERENCES p);" =>
        "CREATE TABLE p (id bigint PRIMARY KEY); CREATE TABLE c (p_id bigint REFERENCES p);";
    exclusion_constraint_added:
        "CREATE TABLE booking (room int, during tsrange);" =>
        "CREATE TABLE booking (room int, during tsrange, EXCLUDE USING gist (during WITH &&));";
    partial_index_added:
        "CREATE TABLE t (id int, deleted boolean);" =>
        "CREATE TABLE t (id int, deleted boolean); CREATE UNIQUE INDEX t_live ON t (id) WHERE NOT deleted;";
    expression_index_changed:
        "CREATE TABLE u (email text); CREATE INDEX u_email ON u (lower(email));" =>
        "CREATE TABLE u (email text); CREATE INDEX u_email ON u (lower(trim(email)));";
    view_added:
        "CREATE TABLE t (id int, name text);" =>
        "CREATE TABLE t (id int, name text); CREATE VIEW named AS SELECT id, name FROM t WHERE name IS NOT NULL;";
    view_over_a_column_whose_type_changes:
        "CREATE TABLE t (id int, amount int); CREATE VIEW totals AS SELECT sum(amount) AS total FROM t;" =>
        "CREATE TABLE t (id int, amount bigint); CREATE VIEW totals AS SELECT sum(amount) AS total FROM t;";
    view_over_a_view_changed:
        "CREATE TABLE t (a int, b int); CREATE VIEW v1 AS SELECT a FROM t; CREATE VIEW v2 AS SELECT a FROM v1;" =>
        "CREATE TABLE t (a int, b int); CREATE VIEW v1 AS SELECT a, b FROM t; CREATE VIEW v2 AS SELECT a, b FROM v1;";
    view_over_a_dropped_column:
        "CREATE TABLE t (a int, b int); CREATE VIEW v AS SELECT a, b FROM t;" =>
        "CREATE TABLE t (a int); CREATE VIEW v AS SELECT a FROM t;";
    materialized_view_with_index_added:
        "CREATE TABLE t (k text, n int);" =>
        "CREATE TABLE t (k text, n int);
         CREATE MATERIALIZED VIEW per_k AS SELECT k, sum(n) AS n FROM t GROUP BY k;
         CREATE UNIQUE INDEX per_k_k ON per_k (k);";
    materialized_view_changed:
        "CREATE TABLE t (k text, n int); CREATE MATERIALIZED VIEW m AS SELECT k FROM t;" =>
        "CREATE TABLE t (k text, n int); CREATE MATERIALIZED VIEW m AS SELECT k, n FROM t;";
    function_body_changed:
        "CREATE FUNCTION add_one(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1';" =>
        "CREATE FUNCTION add_one(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x + 2';";
    function_signature_changed:
        "CREATE FUNCTION greet(name text) RETURNS text LANGUAGE sql AS $$ SELECT 'hi ' || name $$;" =>
        "CREATE FUNCTION greet(name text, punctuation text DEFAULT '!') RETURNS text LANGUAGE sql
         AS $$ SELECT 'hi ' || name || punctuation $$;";
    function_in_a_default_replaced:
        "CREATE FUNCTION new_code() RETURNS text LANGUAGE sql AS $$ SELECT 'a' $$;
         CREATE TABLE t (code text DEFAULT new_code());" =>
        "CREATE FUNCTION next_code(prefix text DEFAULT 'b') RETURNS text LANGUAGE sql AS $$ SELECT prefix $$;
         CREATE TABLE t (code text DEFAULT next_code());";
    procedure_added:
        "CREATE TABLE audit (at timestamptz);" =>
        "CREATE TABLE audit (at timestamptz);
         CREATE PROCEDURE stamp() LANGUAGE sql AS $$ INSERT INTO audit VALUES (now()) $$;";
    trigger_added:
        "CREATE TABLE t (id int, updated_at timestamptz);" =>
        "CREATE TABLE t (id int, updated_at timestamptz);
         CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
         CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION touch();";
    trigger_changed:
        "CREATE TABLE t (id int);
         CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER t_noop BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION noop();" =>
        "CREATE TABLE t (id int);
         CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER t_noop BEFORE INSERT OR UPDATE ON t FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION noop();";
    comments_added_and_changed:
        "CREATE TABLE t (id int); COMMENT ON TABLE t IS 'old';
         CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';" =>
        "CREATE TABLE t (id int); COMMENT ON TABLE t IS 'the t''s table'; COMMENT ON COLUMN t.id IS 'key';
         CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'; COMMENT ON FUNCTION f() IS 'one';";
    unlogged_table:
        "CREATE TABLE cache (k text PRIMARY KEY, v text);" =>
        "CREATE UNLOGGED TABLE cache (k text PRIMARY KEY, v text);";
    row_level_security_enabled:
        "CREATE TABLE t (id int);" =>
        "CREATE TABLE t (id int); ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY;";
    trigger_disabled:
        "CREATE TABLE t (id int);
         CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER t_noop BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION noop();" =>
        "CREATE TABLE t (id int);
         CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER t_noop BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION noop();
         ALTER TABLE t DISABLE TRIGGER t_noop;";
    enum_rebuilt_under_a_foreign_key:
        "CREATE TYPE st AS ENUM ('a', 'b', 'c'); CREATE TABLE p (s st PRIMARY KEY); CREATE TABLE c (s st REFERENCES p);" =>
        "CREATE TYPE st AS ENUM ('a', 'c'); CREATE TABLE p (s st PRIMARY KEY); CREATE TABLE c (s st REFERENCES p);";
    column_moved_to_another_enum:
        "CREATE TYPE a AS ENUM ('x', 'y'); CREATE TABLE t (v a);" =>
        "CREATE TYPE b AS ENUM ('x', 'y', 'z'); CREATE TABLE t (v b);";
    quoted_names:
        "CREATE TABLE \"Order Lines\" (\"Id\" int);" =>
        "CREATE SCHEMA \"My App\"; CREATE TABLE \"Order Lines\" (\"Id\" int, \"Unit Price\" numeric(10,2) NOT NULL DEFAULT 0);
         CREATE TYPE \"My App\".\"Sta'tus\" AS ENUM ('on', 'o''ff'); CREATE TABLE \"My App\".x (s \"My App\".\"Sta'tus\");";
}

#[test]
fn destructive_statements_and_renames_are_flagged() {
    let (up, down) = round_trip(
        "CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE TABLE old (id int);
         CREATE TABLE t (id int, fullname text, n bigint, m mood);",
        "CREATE TYPE mood AS ENUM ('sad'); CREATE TABLE t (id int, display_name text, n int, m mood);",
    );
    contains(&up, "-- DESTRUCTIVE: drops table public.old and every row in it");
    contains(&up, "-- DESTRUCTIVE: drops column fullname of public.t");
    contains(&up, "-- DESTRUCTIVE: changes public.t.n from bigint to integer");
    contains(&up, "-- DESTRUCTIVE: removes 'happy' from public.mood");
    contains(&up, "ALTER TABLE public.t RENAME COLUMN fullname TO display_name;");
    contains(&up, "4 statement(s) below are marked DESTRUCTIVE");
    contains(&down, "ALTER TABLE public.t RENAME COLUMN display_name TO fullname;");
    assert!(!down.contains("DESTRUCTIVE: changes"), "widening back is not destructive:\n{down}");
}

#[test]
fn check_catches_drift_until_prepare_writes_the_migration() {
    let p = Project::new("native");
    p.write(START, "CREATE TABLE t (id int PRIMARY KEY);");
    p.write(DECLARED, "CREATE TABLE t (id int PRIMARY KEY);");
    p.ok(&["schema", "--check"]);
    let (out, err) = p.ok_err(&["prepare", "nothing"]);
    assert!(out.is_empty(), "{out}");
    contains(&err, "nothing to write");

    p.write(DECLARED, "CREATE TABLE t (id int PRIMARY KEY, email text NOT NULL UNIQUE);");
    let out = p.run(&["schema", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    contains(&stdout, "ALTER TABLE public.t ADD COLUMN email text NOT NULL;");
    contains(&stdout, "ADD CONSTRAINT t_email_key UNIQUE (email);");
    contains(&String::from_utf8_lossy(&out.stderr), "cargo xtask prepare");

    p.ok(&["prepare", "add email"]);
    p.ok(&["setup"]);
    p.ok(&["schema", "--check"]);
    assert!(p.databases_on_server_all().iter().all(|d| !d.starts_with("_xtask_")));
}

#[test]
fn schema_write_records_what_the_migrations_make() {
    let p = Project::new("native");
    p.write(
        START,
        "CREATE TYPE kind AS ENUM ('a', 'b');
         CREATE TABLE item (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k kind NOT NULL, tags text[]);
         CREATE VIEW a_items AS SELECT id FROM item WHERE k = 'a';
         COMMENT ON TABLE item IS 'things';",
    );
    p.fails(&["schema", "--check"]);
    p.ok(&["schema", "--write"]);
    let written = std::fs::read_to_string(p.path().join(DECLARED)).unwrap();
    contains(&written, "CREATE TYPE public.kind AS ENUM ('a', 'b');");
    contains(&written, "CREATE VIEW public.a_items AS");
    contains(&written, "COMMENT ON TABLE public.item IS 'things';");
    p.ok(&["schema", "--check"]);
    let (out, _) = p.ok_err(&["prepare", "no change"]);
    assert!(out.is_empty());
}

#[test]
fn manual_and_undeclared_prepare_write_empty_files() {
    let p = Project::new("native");
    let (out, err) = p.ok_err(&["prepare", "first one"]);
    contains(&err, "no migrations");
    assert_eq!(out.lines().count(), 2);
    p.write(DECLARED, "CREATE TABLE t (id int);");
    let out = p.ok(&["prepare", "--manual", "by hand"]);
    let up = out.lines().next().unwrap();
    assert_eq!(std::fs::read_to_string(p.path().join(up)).unwrap(), "-- up: by hand\n");
}

#[test]
fn broken_schema_and_unmodelled_kinds_stop_with_the_reason() {
    let p = Project::new("native");
    p.write(START, "CREATE TABLE t (id int);");
    p.write(DECLARED, "CREATE TABLE t (id int);\nCREATE TABLE u (id nosuchtype);\n");
    let err = p.fails(&["prepare", "broken"]);
    contains(&err, "migrations/schema.sql:2:");
    contains(&err, "nosuchtype");
    p.write(DECLARED, "CREATE TABLE t (id int); CREATE DOMAIN positive AS int CHECK (VALUE > 0);");
    let err = p.fails(&["prepare", "domain"]);
    contains(&err, "type public.positive (only in migrations/schema.sql)");
    contains(&err, "prepare --manual");
    assert!(std::fs::read_dir(p.path().join("migrations")).unwrap().count() == 2, "nothing written");
    assert!(p.databases_on_server_all().iter().all(|d| !d.starts_with("_xtask_")));
}

#[test]
fn interrupted_prepare_drops_its_throwaway_databases() {
    let p = Project::new("native");
    p.ok(&["db-up"]);
    p.write(START, "CREATE TABLE t (id int);");
    p.write(DECLARED, "CREATE TABLE t (id int); SELECT pg_sleep(60);");
    let mut command = Command::new(XTASK);
    command.args(["prepare", "slow"]).current_dir(p.path());
    command.envs(p.env.iter().map(|(k, v)| (k, v)));
    let mut child = command.spawn().unwrap();
    let started = std::time::Instant::now();
    while !p.databases_on_server_all().iter().any(|d| d.starts_with("_xtask_declared")) {
        assert!(started.elapsed() < Duration::from_secs(20), "prepare never made its databases");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(30), "it waited for the sleep");
    assert_eq!(p.databases_on_server_all().iter().filter(|d| d.starts_with("_xtask_")).count(), 0);
}

/// The whole loop a developer runs, on each engine: edit schema.sql, prepare, migrate, check.
pub fn edit_prepare_migrate_check(engine: &str) {
    let p = Project::new(engine);
    p.service("shop", "name = \"shop\"\nextensions = [\"citext\"]");
    p.write(
        "migrations/shop/20260101000000_start.up.sql",
        "CREATE TABLE customer (id int PRIMARY KEY, email citext);",
    );
    p.write("migrations/shop/schema.sql", "CREATE TABLE customer (id int PRIMARY KEY, email citext);");
    p.write("seeds/shop/01.sql", "INSERT INTO customer VALUES (1, 'A@example.com') ON CONFLICT DO NOTHING;");
    p.ok(&["setup"]);
    p.ok(&["schema", "--check"]);
    p.write(
        "migrations/shop/schema.sql",
        "CREATE TABLE customer (id bigint PRIMARY KEY, email citext NOT NULL UNIQUE, name text NOT NULL DEFAULT '');
         CREATE TABLE purchase (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                customer_id bigint NOT NULL REFERENCES customer, total numeric(12,2) NOT NULL);
         CREATE INDEX purchase_customer ON purchase (customer_id);",
    );
    let out = p.ok(&["prepare", "purchases"]);
    assert_eq!(out.lines().count(), 2);
    p.ok(&["migrate"]);
    p.ok(&["schema", "--check"]);
    let mut client = p.service_client("shop");
    let rows = client.query("SELECT id, email::text, name FROM customer", &[]).unwrap();
    assert_eq!(rows.len(), 1, "the seeded row survived the migration");
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    p.ok(&["rollback", "--db", "shop"]);
    assert!(p.databases_on_server_all().iter().all(|d| !d.starts_with("_xtask_")));
}

#[test]
fn kinds_without_generated_sql_are_still_compared() {
    let p = Project::new("native");
    let start = "CREATE DOMAIN positive AS int CHECK (VALUE > 0); CREATE TABLE t (n positive, owner text, a int, b int);
                 CREATE TABLE log (n int); CREATE RULE keep AS ON DELETE TO t DO ALSO INSERT INTO log VALUES (1);
                 CREATE AGGREGATE total(int) (sfunc = int4pl, stype = int, initcond = '0');
                 CREATE STATISTICS t_ab (dependencies) ON a, b FROM t;
                 CREATE FUNCTION plus(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 + $2';
                 CREATE OPERATOR #+# (leftarg = int, rightarg = int, function = plus);
                 CREATE TEXT SEARCH CONFIGURATION words (COPY = simple);";
    p.write(START, start);
    p.write(DECLARED, start);
    p.ok(&["schema", "--check"]);
    let drifts = [
        start.replace("VALUE > 0", "VALUE > 10"),
        start.replace("VALUES (1)", "VALUES (2)"),
        start.replace("initcond = '0'", "initcond = '1'"),
        start.replace("(dependencies)", "(ndistinct)"),
        start.replace("function = plus)", "function = plus, commutator = #+#)"),
        start.replace("COPY = simple", "COPY = english"),
    ];
    for drifted in drifts {
        p.write(DECLARED, &drifted);
        let err = p.fails(&["schema", "--check"]);
        contains(&err, "(differs)");
        let err = p.fails(&["prepare", "drift"]);
        contains(&err, "prepare --manual");
    }
}

#[test]
fn kinds_known_by_name_only_are_refused_not_passed() {
    let p = Project::new("native");
    let both = "CREATE TABLE t (id int); CREATE CONVERSION latin_to_utf FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8;";
    p.write(START, both);
    p.write(DECLARED, both);
    for command in [&["schema", "--check"][..], &["prepare", "same"], &["schema", "--check", "--live"]] {
        if command.contains(&"--live") {
            p.ok(&["setup"]);
        }
        let err = p.fails(command);
        contains(&err, "by name only");
        contains(&err, "conversion public.latin_to_utf");
    }
}

#[test]
fn identity_added_to_a_filled_table_continues_after_its_rows() {
    let p = Project::new("native");
    p.write(
        START,
        "CREATE TABLE t (id int NOT NULL, name text); INSERT INTO t VALUES (1, 'a'), (2, 'b'), (7, 'c');",
    );
    p.write(DECLARED, "CREATE TABLE t (id int GENERATED BY DEFAULT AS IDENTITY, name text);");
    p.ok(&["prepare", "identity"]);
    p.ok(&["setup"]);
    let id: i32 =
        p.client("main").query_one("INSERT INTO t (name) VALUES ('d') RETURNING id", &[]).unwrap().get(0);
    assert_eq!(id, 8);
}
