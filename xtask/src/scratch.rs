//! Throwaway databases (for `prepare` and `schema`): made on the project's server, and dropped when
//! dropped, on error, and on Ctrl-C, SIGTERM or SIGHUP.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use anyhow::{Context, Result};

use crate::conn::{Endpoint, PgError};
use crate::naming::quote_ident;

/// Databases made and not yet dropped, for the signal handler.
static LIVE: Mutex<Vec<(Endpoint, String)>> = Mutex::new(Vec::new());
static SIGNALS: Once = Once::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);
/// Set once a signal arrived: the main thread must then write nothing and report nothing.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

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
            INTERRUPTED.store(true, Ordering::SeqCst);
            let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
            for (endpoint, name) in &live {
                let _ = drop_database(endpoint, name);
            }
            eprintln!("interrupted: dropped {} database(s) this run made", live.len());
            std::process::exit(128 + signal);
        });
    });
}

/// Whether a signal is being handled; then the caller should stop where it is and wait for the
/// exit (its connections are being ended under it, so its errors would mislead).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Has the signal thread drop `name` too, a database made elsewhere (ci's run databases), until
/// `forget_on_signal`.
pub fn drop_on_signal(endpoint: &Endpoint, name: &str) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).push((endpoint.clone(), name.to_owned()));
}

pub fn forget_on_signal(name: &str) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, live)| live != name);
}

/// Waits for the signal thread to end the process, when a signal arrived.
pub fn park_if_interrupted() {
    while interrupted() {
        std::thread::park_timeout(std::time::Duration::from_millis(100));
    }
}

impl Scratch {
    /// Creates `_xtask_<purpose>_<pid>_<n>_<random>` (empty, from template1). The random part
    /// keeps runs apart whose pids coincide (containers sharing one server).
    pub fn create(endpoint: &Endpoint, purpose: &str) -> Result<Scratch> {
        park_if_interrupted();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let token = crate::credentials::random_hex(4)?;
        let name = format!("_xtask_{purpose}_{}_{n}_{token}", std::process::id());
        let mut admin = endpoint.connect(&endpoint.admin_db)?;
        // Registered first: a signal during CREATE DATABASE still finds it.
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push((endpoint.clone(), name.clone()));
        if let Err(error) = admin.batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name))) {
            LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, live)| *live != name);
            park_if_interrupted();
            return Err(PgError::from(error))
                .with_context(|| format!("create the throwaway database {name}"));
        }
        Ok(Scratch { endpoint: endpoint.clone(), name })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if interrupted() {
            return;
        }
        let dropped = drop_database(&self.endpoint, &self.name);
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, name)| *name != self.name);
        if let Err(error) = dropped {
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
