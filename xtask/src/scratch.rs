//! Throwaway databases (for `prepare` and `schema`): made on the project's server, and dropped when
//! dropped, on error, and on Ctrl-C, SIGTERM or SIGHUP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use anyhow::{Context, Result};

use crate::conn::{Endpoint, PgError};
use crate::naming::quote_ident;

/// Databases made and not yet dropped, for the signal handler.
static LIVE: Mutex<Vec<(Endpoint, String)>> = Mutex::new(Vec::new());
static SIGNALS: Once = Once::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A throwaway database, dropped with this value.
pub struct Scratch {
    endpoint: Endpoint,
    pub name: String,
}

/// Routes Ctrl-C, SIGTERM and SIGHUP to a thread that drops the live throwaway databases and
/// exits. Call it on the main thread before starting any other thread (they inherit the blocked
/// signals) and after the last child process is started (so children do not).
pub fn drop_on_signals() {
    SIGNALS.call_once(|| {
        // SAFETY: plain libc calls on a locally owned, initialised sigset_t.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        std::thread::spawn(move || {
            let mut signal = 0;
            // SAFETY: waits on the set blocked above.
            unsafe { libc::sigwait(&set, &mut signal) };
            let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
            for (endpoint, name) in &live {
                let _ = drop_database(endpoint, name);
            }
            eprintln!("interrupted: dropped {} throwaway database(s)", live.len());
            std::process::exit(128 + signal);
        });
    });
}

impl Scratch {
    /// Creates `_xtask_<purpose>_<pid>_<n>` (empty, from template1).
    pub fn create(endpoint: &Endpoint, purpose: &str) -> Result<Scratch> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("_xtask_{purpose}_{}_{n}", std::process::id());
        // Registered first: a signal during CREATE DATABASE still finds it.
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push((endpoint.clone(), name.clone()));
        let scratch = Scratch { endpoint: endpoint.clone(), name };
        let mut admin = endpoint.connect(&endpoint.admin_db)?;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&scratch.name)))
            .map_err(PgError::from)
            .with_context(|| format!("create the throwaway database {}", scratch.name))?;
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, name)| *name != self.name);
        if let Err(error) = drop_database(&self.endpoint, &self.name) {
            eprintln!(
                "warning: could not drop the throwaway database {}: {error:#}\n  \
                 drop it as the server's admin: DROP DATABASE \"{}\"",
                self.name, self.name
            );
        }
    }
}

fn drop_database(endpoint: &Endpoint, name: &str) -> Result<()> {
    let mut admin = endpoint.connect(&endpoint.admin_db)?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)))
        .map_err(PgError::from)?;
    Ok(())
}
