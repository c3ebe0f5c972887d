//! TestDb against the branch's real templates (`cargo xtask setup` makes them): parallel tests get
//! databases of their own, passing tests leave nothing, a failing test's database is kept.

use std::sync::mpsc;

use testdb::TestDb;

fn admin() -> postgres::Client {
    let url = std::env::var("XTASK_ADMIN_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        // The same lookup TestDb does: the environment, then .env.
        let env = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.env")).unwrap();
        env.lines().find_map(|l| l.strip_prefix("XTASK_ADMIN_URL=")).expect("XTASK_ADMIN_URL in .env").into()
    });
    postgres::Client::connect(&url, postgres::NoTls).unwrap()
}

fn exists(name: &str) -> bool {
    admin().query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).unwrap().is_some()
}

#[test]
fn parallel_tests_get_fresh_databases_of_their_own() {
    let names: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|i| {
                scope.spawn(move || {
                    let db = TestDb::new("notes");
                    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
                    let seeded: i64 = client.query_one("SELECT count(*) FROM notes", &[]).unwrap().get(0);
                    client
                        .execute(
                            "INSERT INTO notes (account_id, title, body) VALUES ($1, 'mine', '')",
                            &[&(5000 + i as i64)],
                        )
                        .unwrap();
                    let rows =
                        client.query("SELECT account_id FROM notes WHERE title = 'mine'", &[]).unwrap();
                    let accounts: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                    assert_eq!(accounts, [5000 + i as i64], "a test sees its own rows only");
                    assert!(seeded > 0, "the copy carries the seeds");
                    let owns: bool = client
                        .query_one(
                            "SELECT pg_get_userbyid(datdba) = current_user FROM pg_database \
                             WHERE datname = current_database()",
                            &[],
                        )
                        .unwrap()
                        .get(0);
                    assert!(owns, "tests connect as the service's role, which owns the copy");
                    db.name().to_owned()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut distinct = names.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "{names:?}");
    for name in &names {
        assert!(!exists(name), "{name} was not dropped when its test passed");
    }
}

#[test]
fn a_failing_test_keeps_its_database() {
    let (sender, names) = mpsc::channel();
    let failed = std::thread::spawn(move || {
        let db = TestDb::new("accounts");
        sender.send(db.name().to_owned()).unwrap();
        panic!("this test fails on purpose");
    })
    .join();
    assert!(failed.is_err());
    let name = names.recv().unwrap();
    assert!(exists(&name), "{name} should be kept after a failing test");
    admin().batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)")).unwrap();
}
