//! Developers side by side on one server (the external engine): databases named per developer
//! (after git's user.email), shared branches, and branches/prune/teardown keeping to the caller's.

use crate::harness::{Project, contains};

const PROJECT: &str = "teamshop";

/// One developer's clone: the same project and migrations, their own user.email and branch.
fn developer(server: &Project, email: &str, branch: &str) -> Project {
    let mut p = Project::new("external");
    p.use_server(server);
    p.set("XTASK_DATABASE_URL", &server.admin_url("postgres"));
    p.set("XTASK_PROJECT", PROJECT);
    p.unset("XTASK_PER_DEVELOPER");
    p.service("shop", "name = \"shop\"");
    p.write(
        "migrations/shop/20240101000001_items.up.sql",
        "CREATE TABLE items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner text NOT NULL);",
    );
    p.write("migrations/shop/20240101000001_items.down.sql", "DROP TABLE items;");
    p.git(&["config", "user.email", email]);
    p.git(&["config", "user.name", "dev"]);
    p.git(&["add", "-A"]);
    p.git(&["commit", "-qm", "start"]);
    if branch != "main" {
        p.git(&["checkout", "-qb", branch]);
    }
    p
}

/// What a developer's database holds: its migrations and its rows.
fn fingerprint(p: &Project) -> String {
    let sql = "SELECT (SELECT string_agg(version::text, ',' ORDER BY version) FROM _sqlx_migrations) \
               || ' ' || coalesce((SELECT string_agg(owner, ',' ORDER BY id) FROM items), '')";
    p.ok(&["connect", "--db", "shop", "--", "-Atc", sql]).trim().to_owned()
}

/// What every round runs: setup, migrate, a branch made and wiped, a branch gone from git made and
/// pruned.
fn round(p: &Project, n: usize) {
    p.ok(&["setup"]);
    p.ok(&["migrate"]);
    let scratch = format!("scratch-{n}");
    p.ok(&["setup", "--branch", &scratch]);
    p.ok(&["wipe", "--branch", &scratch]);
    p.ok(&["setup", "--branch", &format!("gone-{n}")]);
    p.ok(&["prune"]);
}

/// Twenty developers, several on the same branch names (main, fix/login, feature-x), run setup,
/// migrate, wipe and prune at once, three rounds: each ends with their own intact database, no one
/// drops or changes another's, and each one's database is what a developer working alone gets.
#[test]
#[ignore = "long: cargo xtask ci --long runs it"]
fn twenty_developers_on_one_server_never_meet() {
    let server = Project::new("native");
    server.ok(&["db-up"]);
    let branches = ["main", "fix/login", "feature-x"];
    let team: Vec<(String, Project)> = (0..20)
        .map(|i| {
            let email = format!("dev{i}@example.com");
            let p = developer(&server, &email, branches[i % branches.len()]);
            (email, p)
        })
        .collect();
    std::thread::scope(|scope| {
        for (email, p) in &team {
            scope.spawn(move || {
                p.ok(&["setup"]);
                let insert = format!("INSERT INTO items (owner) VALUES ('{email}')");
                p.ok(&["connect", "--db", "shop", "--", "-Atc", &insert]);
                for n in 0..3 {
                    round(p, n);
                }
            });
        }
    });

    // A developer working alone on a server of their own: the reference.
    let alone_server = Project::new("native");
    alone_server.ok(&["db-up"]);
    let alone = developer(&alone_server, "alone@example.com", "main");
    alone.ok(&["setup"]);
    alone.ok(&[
        "connect",
        "--db",
        "shop",
        "--",
        "-Atc",
        "INSERT INTO items (owner) VALUES ('alone@example.com')",
    ]);
    for n in 0..3 {
        round(&alone, n);
    }
    let reference = fingerprint(&alone).replace("alone@example.com", "EMAIL");
    assert_eq!(reference, "20240101000001 EMAIL");

    let mut names = std::collections::BTreeSet::new();
    for (email, p) in &team {
        assert_eq!(fingerprint(p).replace(email.as_str(), "EMAIL"), reference, "{email}'s database");
        let url = p.endpoint(p.git(&["branch", "--show-current"]).trim());
        assert!(names.insert(url.split('/').next_back().unwrap().split('?').next().unwrap().to_owned()));
        // Their own only: their branch database and their templates; nothing of the scratch and
        // gone branches is left.
        let listed = p.ok(&["branches", "--json"]);
        let report: serde_json::Value = serde_json::from_str(&listed).unwrap();
        for row in report["databases"].as_array().unwrap() {
            assert_eq!(row["developer"], email.as_str(), "{row}");
            let branch = row["branch"].as_str().unwrap();
            assert!(!branch.starts_with("scratch-") && !branch.starts_with("gone-"), "{row}");
        }
    }
    assert_eq!(names.len(), 20, "twenty databases, one each");

    // Teardown by one developer keeps everyone else's databases and the shared roles.
    let (first_email, first) = &team[0];
    let (_, err) = first.ok_err(&["teardown"]);
    contains(&err, "its roles and");
    assert_eq!(fingerprint(&team[1].1).replace(team[1].0.as_str(), "EMAIL"), reference);
    let listed: serde_json::Value =
        serde_json::from_str(&team[1].1.ok(&["branches", "--json", "--all-developers"])).unwrap();
    let developers: std::collections::BTreeSet<&str> =
        listed["databases"].as_array().unwrap().iter().filter_map(|r| r["developer"].as_str()).collect();
    assert_eq!(developers.len(), 19, "all but {first_email}");
    team[1].1.ok(&["teardown", "--all-developers"]);
    let left: i64 = server
        .admin()
        .query_one("SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)", &[&PROJECT])
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "teardown --all-developers dropped them all");
}

/// `shared-branches`: every developer's `main` is one database; their other branches are not.
#[test]
fn shared_branches_are_one_database_for_all() {
    let server = Project::new("native");
    server.ok(&["db-up"]);
    let mut alice = developer(&server, "alice@example.com", "main");
    let mut bob = developer(&server, "bob@example.com", "main");
    for p in [&mut alice, &mut bob] {
        p.set("XTASK_SHARED_BRANCHES", "main");
    }
    alice.ok(&["setup"]);
    bob.ok(&["setup"]);
    assert_eq!(alice.endpoint("main"), bob.endpoint("main"));
    assert_eq!(
        alice.endpoint("main").rsplit('/').next().unwrap().split('?').next().unwrap(),
        "teamshop_shop"
    );
    assert_ne!(alice.endpoint("fix"), bob.endpoint("fix"), "other branches stay apart");
    assert_eq!(alice.status("fix")["branch"]["developer"], "alice@example.com");
    assert_eq!(alice.status("main")["branch"]["developer"], serde_json::Value::Null);
    let labelled: serde_json::Value = serde_json::from_str(&alice.ok(&["branches", "--json"])).unwrap();
    assert_eq!(
        labelled["databases"][0]["developer"],
        serde_json::Value::Null,
        "a shared database is no one's"
    );
    alice.ok(&["teardown", "--all-developers"]);
}
