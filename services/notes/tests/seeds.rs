//! The development notes in seeds/notes are loaded (`cargo xtask setup` seeds the template each
//! test database is copied from).

use notes::Notes;

#[test]
fn seeded_notes_are_searchable() {
    let db = testdb::TestDb::new("notes");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let notes = Notes::connect(db.url()).await.unwrap();
        let hint = "not seeded: run `cargo xtask seed`";

        let found = notes.search(1, "oranges").await.unwrap();
        assert_eq!(found.iter().map(|note| note.title.as_str()).collect::<Vec<_>>(), ["Groceries"], "{hint}");
        let bobs = notes.list(2).await.unwrap();
        assert!(bobs.iter().any(|note| note.title == "Release checklist"), "{hint}: {bobs:?}");
        // Seeds respect ownership too: Bob's checklist is not Alice's.
        assert_eq!(notes.search(1, "checklist").await.unwrap(), []);
    });
}
