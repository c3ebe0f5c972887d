//! Advisory locks, taken by polling so that no wait is unbounded: whoever can connect to the
//! database the lock lives in (a service's role in its own database, anyone on a shared server)
//! can hold it, so a wait names the holder once it takes more than a second and gives up after
//! `XTASK_LOCK_TIMEOUT` seconds (120 by default), naming it again.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postgres::Client;

use crate::conn::PgError;

/// An advisory lock key, in either of the server's two forms.
#[derive(Clone, Copy, Debug)]
pub enum Key {
    One(i64),
    Two(i32, i32),
}

/// How long a lock is held: until released or the session ends, or until the transaction ends
/// (then the caller must be inside one).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Session,
    Transaction,
}

/// The longest any lock wait lasts: `XTASK_LOCK_TIMEOUT` seconds, 120 when unset.
pub fn timeout() -> Duration {
    let seconds = std::env::var("XTASK_LOCK_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    Duration::from_secs(seconds)
}

/// Takes the lock `key` (named `what` in messages, "the migration lock on x") on `client`'s session
/// in its current database, waiting at most `limit`.
pub fn acquire(client: &mut Client, key: Key, scope: Scope, what: &str, limit: Duration) -> Result<()> {
    let function = match scope {
        Scope::Session => "pg_catalog.pg_try_advisory_lock",
        Scope::Transaction => "pg_catalog.pg_try_advisory_xact_lock",
    };
    let start = Instant::now();
    let mut announced = false;
    loop {
        let taken = match key {
            Key::One(key) => client.query_one(&format!("SELECT {function}($1)"), &[&key]),
            Key::Two(class, id) => client.query_one(&format!("SELECT {function}($1, $2)"), &[&class, &id]),
        };
        let taken: bool = taken.map_err(PgError::from).with_context(|| format!("take {what}"))?.get(0);
        if taken {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= limit || (!announced && waited >= Duration::from_secs(1)) {
            let holder = holder(client, key).unwrap_or_else(|| "another session".into());
            if waited >= limit {
                bail!(
                    "{what} is still held by {holder} after {} s (XTASK_LOCK_TIMEOUT): wait for it to \
                     finish, or end that session (SELECT pg_terminate_backend(PID) as the server's admin)",
                    limit.as_secs()
                );
            }
            eprintln!("waiting for {what}, held by {holder} (up to {} s)", limit.as_secs());
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Who holds `key` in the current database: pid, role and application.
fn holder(client: &mut Client, key: Key) -> Option<String> {
    // pg_locks shows a one-part key as its high and low halves (objsubid 1), a two-part key as
    // its parts (objsubid 2), each as an unsigned oid.
    let (class, id, subid) = match key {
        Key::One(key) => ((key >> 32) & 0xffff_ffff, key & 0xffff_ffff, 1),
        Key::Two(class, id) => (i64::from(class as u32), i64::from(id as u32), 2),
    };
    let row = client
        .query_opt(
            "SELECT l.pid, coalesce(a.usename::text, '?'), coalesce(a.application_name, ''), \
                    coalesce(a.state, '') \
             FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid \
             WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted \
               AND l.database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database \
                                WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
               AND l.classid::bigint OPERATOR(pg_catalog.=) $1 AND l.objid::bigint OPERATOR(pg_catalog.=) $2 \
               AND l.objsubid OPERATOR(pg_catalog.=) $3 \
               AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() \
             LIMIT 1",
            &[&class, &id, &(subid as i16)],
        )
        .ok()??;
    let (pid, role, application, state): (i32, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let state = if state.is_empty() { String::new() } else { format!(", {state}") };
    Some(format!("pid {pid} (role {role}, application `{application}`{state})"))
}
