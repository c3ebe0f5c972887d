//! The notes API, each test on a database of its own: a copy of the branch's migrated and seeded
//! template (`testdb::TestDb`), dropped when the test passes.

use std::sync::atomic::{AtomicI64, Ordering};

use notes::{Error, MIGRATOR, Notes};
use sqlx::{Connection, PgConnection};
use testdb::TestDb;

/// Runs a test body on a runtime of its own: sqlx needs one, and a pool must not outlive it.
fn block_on<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(future)
}

async fn connect(db: &TestDb) -> Notes {
    Notes::connect(db.url()).await.expect("connect to the test's notes database")
}

/// An account id above the seeded accounts 1 and 2.
fn unique_account_id() -> i64 {
    static COUNTER: AtomicI64 = AtomicI64::new(1000);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

fn titles(notes: &[notes::Note]) -> Vec<&str> {
    notes.iter().map(|note| note.title.as_str()).collect()
}

/// `cargo xtask setup` migrated the database already: sqlx's migrator must accept its record (same
/// versions, same checksums) and find nothing to do.
#[test]
fn connect_agrees_with_the_recorded_migrations() {
    let db = TestDb::new("notes");
    block_on(async {
        let url = db.url();
        connect(&db).await;
        let mut conn = PgConnection::connect(url).await.unwrap();
        let recorded =
            "SELECT version, checksum, success, installed_on::text FROM _sqlx_migrations ORDER BY version";
        let before: Vec<(i64, Vec<u8>, bool, String)> =
            sqlx::query_as(recorded).fetch_all(&mut conn).await.unwrap();

        connect(&db).await;
        let after: Vec<(i64, Vec<u8>, bool, String)> =
            sqlx::query_as(recorded).fetch_all(&mut conn).await.unwrap();
        assert_eq!(before, after, "a second start-up changed the migration record");

        let embedded: Vec<_> = MIGRATOR
            .iter()
            .filter(|migration| !migration.migration_type.is_down_migration())
            .map(|migration| (migration.version, migration.checksum.to_vec(), true))
            .collect();
        let recorded: Vec<_> =
            after.into_iter().map(|(version, checksum, success, _)| (version, checksum, success)).collect();
        assert_eq!(recorded, embedded);
    });
}

#[test]
fn create_list_delete() {
    let db = TestDb::new("notes");
    block_on(async {
        let notes = connect(&db).await;
        let account = unique_account_id();
        assert_eq!(notes.list(account).await.unwrap(), []);

        let first = notes.create(account, "  First ", "one").await.unwrap();
        assert_eq!((first.account_id, first.title.as_str(), first.body.as_str()), (account, "First", "one"));
        let second = notes.create(account, "Second", "").await.unwrap();
        assert_eq!(notes.list(account).await.unwrap(), [second.clone(), first.clone()], "newest first");

        let stranger = unique_account_id();
        assert!(!notes.delete(stranger, first.id).await.unwrap(), "only the owner deletes a note");
        assert!(notes.delete(account, first.id).await.unwrap());
        assert!(!notes.delete(account, first.id).await.unwrap(), "already deleted");
        assert_eq!(notes.list(account).await.unwrap(), [second]);
    });
}

#[test]
fn a_note_needs_a_title() {
    let db = TestDb::new("notes");
    block_on(async {
        let notes = connect(&db).await;
        let account = unique_account_id();
        for title in ["", "   "] {
            let err = notes.create(account, title, "body").await.unwrap_err();
            assert!(matches!(err, Error::EmptyTitle), "{title:?}: {err:?}");
        }
        assert_eq!(notes.list(account).await.unwrap(), []);
    });
}

#[test]
fn search_ranks_the_best_match_first() {
    let db = TestDb::new("notes");
    block_on(async {
        let notes = connect(&db).await;
        let account = unique_account_id();
        notes.create(account, "Shopping", "Milk, bread and coffee.").await.unwrap();
        notes.create(account, "Coffee", "Beans from the roaster: coffee for the whole month.").await.unwrap();
        notes.create(account, "Tea", "Green tea and a new teapot.").await.unwrap();

        assert_eq!(titles(&notes.search(account, "coffee").await.unwrap()), ["Coffee", "Shopping"]);
        // English stemming: "bean" finds "Beans".
        assert_eq!(titles(&notes.search(account, "bean").await.unwrap()), ["Coffee"]);
        // Web search syntax: alternatives, exclusions and phrases.
        assert_eq!(titles(&notes.search(account, "teapot or bread").await.unwrap()).len(), 2);
        assert_eq!(titles(&notes.search(account, "coffee -milk").await.unwrap()), ["Coffee"]);
        assert_eq!(titles(&notes.search(account, "\"green tea\"").await.unwrap()), ["Tea"]);
        assert_eq!(notes.search(account, "whisky").await.unwrap(), []);
        assert_eq!(notes.search(account, "").await.unwrap(), []);
    });
}

#[test]
fn search_sees_only_the_accounts_own_notes() {
    let db = TestDb::new("notes");
    block_on(async {
        let notes = connect(&db).await;
        let (alice, bob) = (unique_account_id(), unique_account_id());
        let hers = notes.create(alice, "Passport renewal", "Book an appointment").await.unwrap();
        notes.create(bob, "Passport photos", "Bring two passport photos").await.unwrap();

        assert_eq!(notes.list(alice).await.unwrap(), std::slice::from_ref(&hers));
        assert_eq!(notes.search(alice, "passport").await.unwrap(), [hers]);
        assert_eq!(titles(&notes.search(bob, "passport").await.unwrap()), ["Passport photos"]);
    });
}
