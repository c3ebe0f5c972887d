//! The view counters, against the branch's Redis as `cargo xtask setup` made it: the URL and the
//! key prefix come from `.env` (or CI's environment). Each test counts notes of ids of its own.

use std::sync::atomic::{AtomicI64, Ordering};

use notes::views::Views;

fn views() -> Views {
    let (url, prefix) = testdb::redis("notes");
    Views::connect(&url, &prefix).expect("connect to the branch's Redis as the notes service")
}

/// Ids no other test (nor another run on this branch) counts at the same time.
fn unique_note_id() -> i64 {
    static COUNTER: AtomicI64 = AtomicI64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    (nanos as i64 & 0x0fff_ffff_ffff) * 1000 + COUNTER.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn readings_are_counted_per_note() {
    let mut views = views();
    let (a, b) = (unique_note_id(), unique_note_id());
    assert_eq!(views.count(a).unwrap(), 0);
    assert_eq!(views.record(a).unwrap(), 1);
    assert_eq!(views.record(a).unwrap(), 2);
    assert_eq!(views.record(b).unwrap(), 1);
    assert_eq!((views.count(a).unwrap(), views.count(b).unwrap()), (2, 1));
    views.forget(a).unwrap();
    views.forget(b).unwrap();
    assert_eq!(views.count(a).unwrap(), 0);
}

/// The service's user reaches its own keys only: a key outside its prefix, and the commands that
/// see every key, are refused by the server.
#[test]
fn keys_outside_the_prefix_are_refused() {
    let (url, prefix) = testdb::redis("notes");
    let mut connection = redis::Client::open(url).unwrap().get_connection().unwrap();
    let outside: redis::RedisResult<()> =
        redis::cmd("SET").arg("accounts:views:1").arg(1).query(&mut connection);
    let error = outside.expect_err("a key outside the prefix must be refused");
    assert_eq!(error.code(), Some("NOPERM"), "{error}");
    for words in [&["FLUSHALL"][..], &["KEYS", "*"], &["CONFIG", "GET", "*"]] {
        let refused: redis::RedisResult<redis::Value> =
            redis::cmd(words[0]).arg(&words[1..]).query(&mut connection);
        assert_eq!(refused.expect_err(words[0]).code(), Some("NOPERM"), "{words:?}");
    }
    let own = format!("{prefix}views:test:{}", unique_note_id());
    let () = redis::cmd("SET").arg(&own).arg(1).query(&mut connection).unwrap();
    let deleted: i64 = redis::cmd("DEL").arg(&own).query(&mut connection).unwrap();
    assert_eq!(deleted, 1, "its own keys are its to write and delete");
}
