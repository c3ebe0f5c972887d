//! Branch databases copied from pristine templates, and `setup --from`: what a copy carries (schema,
//! seeds, the branch's own migrations, owner, label, grants, settings), when a template is rebuilt,
//! and a copy refused while someone uses its source.

use crate::harness::{Project, contains};
use crate::services::two_services;

/// `(name, owner, allows connections, label)` of every database of the project.
fn catalog(p: &Project) -> Vec<(String, String, bool, String)> {
    let rows = p
        .admin()
        .query(
            "SELECT datname::text, pg_get_userbyid(datdba)::text, datallowconn, \
                    coalesce(shobj_description(oid, 'pg_database'), '') \
             FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
            &[&p.name],
        )
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
}

fn templates(p: &Project) -> Vec<String> {
    catalog(p).into_iter().filter(|(name, ..)| name.contains("__tpl_")).map(|(name, ..)| name).collect()
}

fn db_client(p: &Project, db: &str) -> postgres::Client {
    postgres::Client::connect(&p.admin_url(db), postgres::NoTls).unwrap()
}

fn rows(p: &Project, db: &str, sql: &str) -> Vec<String> {
    let rows = db_client(p, db).query(sql, &[]).unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

fn commit_all(p: &Project, message: &str) {
    p.git(&["add", "-A"]);
    p.git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", message]);
}

pub fn copies_from_templates(engine: &str) {
    let mut p = two_services(engine);
    commit_all(&p, "two services");
    let (accounts, notes) = (format!("{}_accounts", p.name), format!("{}_notes", p.name));

    // First setup on main: one template per logical database, built once, closed to connections
    // and given to the admin.
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "building the template of `accounts` (1 migration(s), 1 seed file(s))");
    let built = templates(&p);
    assert_eq!(built.len(), 2, "{built:?}");
    for (name, owner, allows, label) in catalog(&p).iter().filter(|(n, ..)| n.contains("__tpl_")) {
        assert!(!allows, "{name} must be closed to connections");
        // The admin's once published, so the service's role cannot reopen or change it.
        assert_eq!(owner, "postgres", "{name} owned by {owner}");
        contains(label, "\"template\":\"");
        contains(label, "\"branch\":\"main\"");
    }

    // A new branch: a copy of the template, no build; schema, seeds, migration record, owner, label.
    p.set("XTASK_BRANCH", "feature");
    let (_, err) = p.ok_err(&["setup"]);
    assert!(!err.contains("building the template"), "{err}");
    let feature_accounts = format!("{accounts}_feature");
    contains(&err, &format!("created database {feature_accounts} as a copy of {accounts}__tpl_"));
    assert_eq!(rows(&p, &feature_accounts, "SELECT email::text FROM users"), ["Alice@example.com"]);
    assert_eq!(rows(&p, &feature_accounts, "SELECT version::text FROM _sqlx_migrations"), ["20240101000001"]);
    let feature = catalog(&p).into_iter().find(|(n, ..)| *n == feature_accounts).unwrap();
    assert_eq!(feature.1, accounts, "owned by the service's role");
    assert!(feature.2);
    contains(&feature.3, "\"branch\":\"feature\"");
    assert!(!feature.3.contains("template"), "{}", feature.3);
    // CONNECT is the owner's only: the notes role cannot get in.
    let notes_url = p.ok(&["db-endpoint", "--db", "notes"]);
    let other = format!("{}/{feature_accounts}", notes_url.trim().rsplit_once('/').unwrap().0);
    let refused = postgres::Client::connect(&other, postgres::NoTls).err().expect("notes role refused");
    assert_eq!(refused.code().map(|c| c.code()), Some("42501"), "{refused}");
    // The service works on its copy as its role.
    let mut service = p.service_client("accounts");
    service.batch_execute("INSERT INTO users (id, email) VALUES (2, 'bob@example.com')").unwrap();

    // A migration lands on main: the next new branch gets a rebuilt shared template; the old
    // shared one of accounts is dropped, notes' (unchanged) stays.
    p.write("migrations/accounts/20240101000002_nick.up.sql", "ALTER TABLE users ADD COLUMN nick text;");
    commit_all(&p, "nick");
    p.set("XTASK_BRANCH", "feature3");
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "building the template of `accounts` (2 migration(s), 1 seed file(s))");
    assert!(!err.contains("building the template of `notes`"), "{err}");
    let now = templates(&p);
    assert!(!now.contains(&built.iter().find(|t| t.starts_with(&accounts)).unwrap().clone()), "{now:?}");
    assert!(now.contains(&built.iter().find(|t| t.starts_with(&notes)).unwrap().clone()), "{now:?}");
    let feature3 = format!("{accounts}_feature3");
    assert_eq!(rows(&p, &feature3, "SELECT count(*)::text FROM _sqlx_migrations"), ["2"]);

    // The branch adds a migration (not committed): the shared template stays, a branch template
    // is built from it, and a new branch database gets the migration and the seeds.
    p.write("migrations/accounts/20240101000003_age.up.sql", "ALTER TABLE users ADD COLUMN age int;");
    p.set("XTASK_BRANCH", "feature2");
    let (_, err) = p.ok_err(&["setup"]);
    assert!(!err.contains("building the template"), "the shared template is reused: {err}");
    contains(&err, "and this branch's 1 migration(s)");
    let feature2 = format!("{accounts}_feature2");
    assert_eq!(
        rows(&p, &feature2, "SELECT email::text || coalesce(nick, '-') || coalesce(age, 0) FROM users"),
        ["Alice@example.com-0"]
    );
    assert_eq!(
        templates(&p).len(),
        3,
        "shared accounts and notes, and feature2's accounts: {:?}",
        templates(&p)
    );
    let env = std::fs::read_to_string(p.path().join(".env")).unwrap();
    let branch_template = env.lines().find_map(|l| l.strip_prefix("ACCOUNTS_TEMPLATE_DATABASE=")).unwrap();
    assert!(branch_template.starts_with(&accounts) && !now.iter().any(|t| t == branch_template));
    contains(&env, "XTASK_ADMIN_URL=");

    // Templates off: migrated from empty, same content.
    p.set("XTASK_TEMPLATES", "0");
    p.set("XTASK_BRANCH", "plain");
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "applied 3 migration(s)");
    contains(&err, "loaded the seeds");
    p.set("XTASK_TEMPLATES", "1");
    let plain = format!("{accounts}_plain");
    let columns = "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns \
                   WHERE table_name = 'users'";
    assert_eq!(rows(&p, &plain, columns), rows(&p, &feature2, columns));
    assert_eq!(rows(&p, &plain, columns), ["id,email,hash,nick,age"]);

    // Seeds that need the branch's own migration: the shared template cannot take them, so the
    // branch's template is built from empty, seeds last.
    p.write("migrations/accounts/20240101000004_team.up.sql", "ALTER TABLE users ADD COLUMN team text;");
    p.write(
        "seeds/accounts/01_users.sql",
        "INSERT INTO users (id, email, team) VALUES (1, 'Alice@example.com', 'red');",
    );
    p.set("XTASK_BRANCH", "seedy");
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "the shared template of `accounts` could not be built");
    contains(&err, "building the template of `accounts` (4 migration(s), 1 seed file(s))");
    let seedy = format!("{accounts}_seedy");
    assert_eq!(rows(&p, &seedy, "SELECT email::text || ' ' || team FROM users"), ["Alice@example.com red"]);
}

pub fn setup_from_another_branch(engine: &str) {
    let mut p = two_services(engine);
    commit_all(&p, "two services");
    let accounts = format!("{}_accounts", p.name);
    p.set("XTASK_BRANCH", "source");
    p.ok(&["setup"]);
    let source = format!("{accounts}_source");
    let notes_role = format!("{}_notes", p.name);
    {
        let mut admin = db_client(&p, &source);
        admin.batch_execute("INSERT INTO users (id, email) VALUES (7, 'seven@example.com')").unwrap();
    }
    let mut admin = p.admin();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{source}\" SET statement_timeout = '7s'; \
             ALTER DATABASE \"{source}\" SET search_path = \"$user\", public, extra; \
             GRANT CONNECT ON DATABASE \"{source}\" TO \"{notes_role}\""
        ))
        .unwrap();

    // Someone is connected to the source: refused, naming the session; nothing is made.
    let mut holder = db_client(&p, &source);
    holder.batch_execute("SET application_name = 'holder-app'").unwrap();
    p.set("XTASK_BRANCH", "copy");
    let err = p.fails(&["setup", "--from", "source"]);
    contains(&err, &format!("database {source} cannot be copied while others are connected"));
    contains(&err, "holder-app");
    assert!(!p.databases_on_server().iter().any(|d| d.ends_with("_copy")), "{:?}", p.databases_on_server());
    drop(holder);

    let (_, err) = p.ok_err(&["setup", "--from", "source"]);
    let copy = format!("{accounts}_copy");
    contains(&err, &format!("created database {copy} as a copy of {source}"));
    let emails = "SELECT string_agg(email::text, ',' ORDER BY id) FROM users";
    assert_eq!(rows(&p, &copy, emails), ["Alice@example.com,seven@example.com"]);
    let mut settings = |db: &str| -> Vec<String> {
        let rows = admin
            .query(
                "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
                 WHERE d.datname = $1 ORDER BY 1",
                &[&db],
            )
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    };
    let (copied, original) = (settings(&copy), settings(&source));
    assert_eq!(copied, original);
    assert_eq!(copied.len(), 2);
    let can_connect: bool = admin
        .query_one("SELECT has_database_privilege($1, $2, 'CONNECT')", &[&notes_role, &copy])
        .unwrap()
        .get(0);
    assert!(can_connect, "the source's grant is carried to the copy");
    let label: String = admin
        .query_one(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&copy],
        )
        .unwrap()
        .get(0);
    contains(&label, "\"branch\":\"copy\"");

    // The copy exists now: --from again would replace its data, so it is refused.
    let err = p.fails(&["setup", "--from", "source"]);
    contains(&err, "cargo xtask wipe");
    // A branch without databases, or this branch itself: clear errors.
    contains(&p.fails(&["setup", "--from", "nowhere"]), "branch `nowhere` has no database");
    contains(&p.fails(&["setup", "--from", "copy"]), "names this branch itself");
}

/// A branch started before the default branch's newest migration keeps its own shared template; a
/// newer one built on main replaces it once, and from then on the two live side by side instead of
/// evicting each other on every setup.
#[test]
fn shared_templates_of_older_bases_do_not_evict_each_other() {
    let p = two_services("native");
    commit_all(&p, "two services");
    let first = p.git(&["rev-parse", "HEAD"]).trim().to_owned();
    p.write("migrations/accounts/20240101000002_nick.up.sql", "ALTER TABLE users ADD COLUMN nick text;");
    commit_all(&p, "nick");
    let trees = tempfile::tempdir().unwrap();
    let old = trees.path().join("old");
    p.git(&["worktree", "add", "--quiet", "-b", "old", old.to_str().unwrap(), &first]);
    let env_template = |dir: &std::path::Path| -> String {
        let env = std::fs::read_to_string(dir.join(".env")).unwrap();
        env.lines().find_map(|l| l.strip_prefix("ACCOUNTS_TEMPLATE_DATABASE=")).unwrap().to_owned()
    };
    let setup_in = |dir: &std::path::Path| -> String {
        let out = p.run_in(dir, &["setup"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let err = setup_in(&old);
    contains(&err, "building the template of `accounts` (1 migration(s)");
    let err = setup_in(p.path());
    contains(&err, "building the template of `accounts` (2 migration(s)");
    // main's is newer: the old branch's (built from an ancestor of main) made way, once.
    let err = setup_in(&old);
    contains(&err, "building the template of `accounts` (1 migration(s)");
    for _ in 0..2 {
        for dir in [p.path(), old.as_path()] {
            let err = setup_in(dir);
            assert!(!err.contains("building the template"), "{err}");
        }
    }
    let templates = templates(&p);
    assert!(templates.contains(&env_template(p.path())), "{templates:?}");
    assert!(templates.contains(&env_template(&old)), "{templates:?}");
}
