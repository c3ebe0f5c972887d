//! The accounts API against the branch's accounts database (`cargo xtask setup` creates it).
//!
//! The database is shared with earlier runs and with the seeds, so every test registers addresses of its
//! own and asserts only about them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use accounts::{Accounts, Error};

fn connect() -> Accounts {
    Accounts::connect(&testdb::database_url("accounts")).expect("connect to the accounts database")
}

/// An address no other test, run or seed uses: process id, time and a counter.
fn unique_email(name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{name}-{}-{nanos}-{n}@test.example", std::process::id())
}

#[test]
fn register_then_verify() {
    let mut accounts = connect();
    let email = unique_email("verify");
    // Quotes and SQL in a password are just characters: it travels as a bind parameter.
    let password = "correct horse'; DROP TABLE accounts; --";
    let account = accounts.register(&email, password).unwrap();
    assert_eq!(account.email, email);
    assert_eq!(account.display_name, None);

    assert_eq!(accounts.verify(&email, password).unwrap(), Some(account.clone()));
    assert_eq!(accounts.verify(&email.to_uppercase(), password).unwrap(), Some(account));
    assert_eq!(accounts.verify(&email, "correct horse").unwrap(), None);
    assert_eq!(accounts.verify(&unique_email("nobody"), password).unwrap(), None);
}

#[test]
fn the_same_address_in_another_case_is_taken() {
    let mut accounts = connect();
    let email = unique_email("Taken");
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
    let mut accounts = connect();
    for email in ["", "  ", "no-at-sign.example", "@example.com"] {
        let err = accounts.register(email, "password").unwrap_err();
        assert!(matches!(err, Error::InvalidEmail), "{email:?}: {err:?}");
        assert!(matches!(accounts.verify(email, "password"), Err(Error::InvalidEmail)), "{email:?}");
    }
    let email = unique_email("empty-password");
    assert!(matches!(accounts.register(&email, ""), Err(Error::EmptyPassword)));
    assert!(matches!(accounts.verify(&email, ""), Err(Error::EmptyPassword)));
    // Nothing was written for the refused registration.
    accounts.register(&email, "now with a password").unwrap();
}

#[test]
fn find_by_id() {
    let mut accounts = connect();
    let email = unique_email("find");
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
