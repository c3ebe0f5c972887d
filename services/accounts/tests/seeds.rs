//! The development accounts in seeds/accounts are loaded (`cargo xtask setup` seeds the template each
//! test database is copied from).

use accounts::Accounts;

#[test]
fn seeded_accounts_log_in() {
    let db = testdb::TestDb::new("accounts");
    let mut accounts = Accounts::connect(db.url()).unwrap();
    for (email, password, display_name) in [
        ("alice@example.com", "alice-password", Some("Alice")),
        ("bob@example.com", "bob-password", Some("Bob")),
        ("Carol@Example.com", "carol-password", None),
    ] {
        let account = accounts.verify(email, password).unwrap();
        let account = account.unwrap_or_else(|| panic!("{email} is not seeded: run `cargo xtask seed`"));
        assert_eq!(account.email, email.to_lowercase());
        assert_eq!(account.display_name.as_deref(), display_name);
        assert_eq!(accounts.verify(email, "wrong").unwrap(), None);
    }
}
