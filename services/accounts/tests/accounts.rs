//! The accounts API, each test on a database of its own: a copy of the branch's migrated and seeded
//! template (`testdb::TestDb`), so a test sees the seeds and its own rows and nothing else.

use accounts::{Accounts, Error};
use testdb::TestDb;

fn connect(db: &TestDb) -> Accounts {
    Accounts::connect(db.url()).expect("connect to the test's accounts database")
}

fn address(name: &str) -> String {
    format!("{name}@test.example")
}

#[test]
fn register_then_verify() {
    let db = TestDb::new("accounts");
    let mut accounts = connect(&db);
    let email = address("verify");
    // Quotes and SQL in a password are just characters: it travels as a bind parameter.
    let password = "correct horse'; DROP TABLE accounts; --";
    let account = accounts.register(&email, password).unwrap();
    assert_eq!(account.email, email);
    assert_eq!(account.display_name, None);

    assert_eq!(accounts.verify(&email, password).unwrap(), Some(account.clone()));
    assert_eq!(accounts.verify(&email.to_uppercase(), password).unwrap(), Some(account));
    assert_eq!(accounts.verify(&email, "correct horse").unwrap(), None);
    assert_eq!(accounts.verify(&address("nobody"), password).unwrap(), None);
}

#[test]
fn the_same_address_in_another_case_is_taken() {
    let db = TestDb::new("accounts");
    let mut accounts = connect(&db);
    let email = address("Taken");
    let first = accounts.register(&email, "first").unwrap();
    let err = accounts.register(&email.to_lowercase(), "second").unwrap_err();
    assert!(matches!(err, Error::EmailTaken), "{err:?}");
    assert_eq!(err.to_string(), "an account with this e-mail address already exists");

    // The first registration is untouched, and the connection still works after the failed insert.
    assert_eq!(accounts.verify(&email, "first").unwrap(), Some(first));
    assert_eq!(accounts.verify(&email, "second").unwrap(), None);
}

#[test]
fn invalid_input_is_refused_before_the_database() {
    let db = TestDb::new("accounts");
    let mut accounts = connect(&db);
    for email in ["", "  ", "no-at-sign.example", "@example.com"] {
        let err = accounts.register(email, "password").unwrap_err();
        assert!(matches!(err, Error::InvalidEmail), "{email:?}: {err:?}");
        assert!(matches!(accounts.verify(email, "password"), Err(Error::InvalidEmail)), "{email:?}");
    }
    let email = address("empty-password");
    assert!(matches!(accounts.register(&email, ""), Err(Error::EmptyPassword)));
    assert!(matches!(accounts.verify(&email, ""), Err(Error::EmptyPassword)));
    // Nothing was written for the refused registration.
    accounts.register(&email, "now with a password").unwrap();
}

#[test]
fn find_by_id() {
    let db = TestDb::new("accounts");
    let mut accounts = connect(&db);
    let email = address("find");
    let account = accounts.register(&format!("  {email} "), "password").unwrap();
    assert_eq!(account.email, email, "surrounding blanks are trimmed");
    assert_eq!(accounts.find(account.id).unwrap(), Some(account));
    assert_eq!(accounts.find(-1).unwrap(), None);
}

#[test]
fn a_bad_url_is_a_database_error() {
    let err = Accounts::connect("postgres://nobody@127.0.0.1:1/accounts").err().expect("no server on port 1");
    assert!(matches!(err, Error::Database(_)), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn a_test_sees_the_seeds_and_its_own_rows_only() {
    let db = TestDb::new("accounts");
    let mut accounts = connect(&db);
    let seeded = ["alice@example.com", "bob@example.com", "carol@example.com"];
    let mine = accounts.register(&address("mine"), "password").unwrap();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let rows = client.query("SELECT email::text FROM accounts ORDER BY id", &[]).unwrap();
    let emails: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(emails, [&seeded[..], &[mine.email.as_str()]].concat());
}
