//! How often each note was read: a counter per note in Redis, under the service's key prefix.
//!
//! `cargo xtask setup` gives the service a Redis user of its own on each branch, allowed only the
//! keys under its prefix: `NOTES_REDIS_URL` and `NOTES_REDIS_PREFIX` in `.env`.

use redis::{Commands, RedisResult};

/// The view counters, over one connection.
pub struct Views {
    connection: redis::Connection,
    prefix: String,
}

impl Views {
    /// Connects to `url` as the service's user; every key is `prefix` followed by the key's own name.
    pub fn connect(url: &str, prefix: &str) -> RedisResult<Views> {
        let connection = redis::Client::open(url)?.get_connection()?;
        Ok(Views { connection, prefix: prefix.to_owned() })
    }

    fn key(&self, note_id: i64) -> String {
        format!("{}views:{note_id}", self.prefix)
    }

    /// Counts one more reading of the note; returns its count.
    pub fn record(&mut self, note_id: i64) -> RedisResult<i64> {
        let key = self.key(note_id);
        self.connection.incr(key, 1)
    }

    /// The note's count (0 when never read).
    pub fn count(&mut self, note_id: i64) -> RedisResult<i64> {
        let key = self.key(note_id);
        Ok(self.connection.get::<_, Option<i64>>(key)?.unwrap_or(0))
    }

    /// Forgets the note's count (the note was deleted).
    pub fn forget(&mut self, note_id: i64) -> RedisResult<()> {
        let key = self.key(note_id);
        self.connection.del(key)
    }
}
