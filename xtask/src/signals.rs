//! Ctrl-C, SIGTERM and SIGHUP: a thread of their own ends the process groups this process started
//! for long work (`cargo test`, clippy), runs the cleanups registered for the moment (dropping
//! throwaway databases, sweeping what the tests left), and exits with 128 + the signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

type Cleanup = Box<dyn Fn() + Send>;

static START: Once = Once::new();
/// Set once a signal arrived: the main thread must then write nothing and report nothing.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Held by the main thread through work a signal must not cut in two (`swap`): the signal thread
/// takes it before it ends the process.
static HELD: Mutex<()> = Mutex::new(());
/// The process groups of children running now (each is its own group's leader).
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// What to undo on a signal, by key, in the order registered.
static CLEANUPS: Mutex<Vec<(String, Cleanup)>> = Mutex::new(Vec::new());

/// Routes the signals to the thread that cleans up and exits. Call it on the main thread before
/// starting any other thread (they inherit the blocked signals); children started with
/// [`crate::os::signals_unblocked`] get them back.
pub fn handle() {
    START.call_once(|| {
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
            // Held to the exit: the main thread blocks when it next asks for it.
            let _held = held();
            let groups = std::mem::take(&mut *lock(&GROUPS));
            for group in &groups {
                crate::procs::end_group(*group, Duration::from_secs(10));
            }
            if !groups.is_empty() {
                eprintln!("interrupted: ended {} child process group(s)", groups.len());
            }
            for (_, cleanup) in std::mem::take(&mut *lock(&CLEANUPS)) {
                cleanup();
            }
            std::process::exit(128 + signal);
        });
    });
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Until the guard is dropped, a signal waits.
pub fn held() -> MutexGuard<'static, ()> {
    lock(&HELD)
}

/// Whether a signal is being handled; then the caller should stop where it is and wait for the
/// exit (its connections are being ended under it, so its errors would mislead).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Waits for the signal thread to end the process, when a signal arrived.
pub fn park_if_interrupted() {
    while interrupted() {
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// Has a signal run `cleanup` (once), until [`forget`] with the same key; a key registered again
/// replaces its cleanup.
pub fn on_signal(key: &str, cleanup: impl Fn() + Send + 'static) {
    let mut cleanups = lock(&CLEANUPS);
    cleanups.retain(|(k, _)| k != key);
    cleanups.push((key.to_owned(), Box::new(cleanup)));
}

pub fn forget(key: &str) {
    lock(&CLEANUPS).retain(|(k, _)| k != key);
}

/// Runs `command` (its redirections set by the caller) to its end in a process group of its own,
/// with the signals unblocked: a signal to this process ends it and everything it started in its
/// group.
pub fn run_as_group(command: duct::Expression, shown: &str) -> anyhow::Result<std::process::Output> {
    use anyhow::Context;
    use std::os::unix::process::CommandExt;
    let command = crate::os::signals_unblocked(command).before_spawn(|command| {
        command.process_group(0);
        Ok(())
    });
    let handle = {
        // Checked and registered under the lock the signal thread takes: no group starts unseen.
        let mut groups = loop {
            let groups = lock(&GROUPS);
            if !interrupted() {
                break groups;
            }
            drop(groups);
            park_if_interrupted();
        };
        let handle = command.unchecked().start().with_context(|| format!("run {shown}"))?;
        groups.extend(handle.pids().into_iter().map(|pid| pid as i32));
        handle
    };
    let waited = handle.wait().cloned();
    let pids: Vec<i32> = handle.pids().into_iter().map(|pid| pid as i32).collect();
    lock(&GROUPS).retain(|group| !pids.contains(group));
    park_if_interrupted();
    waited.with_context(|| format!("wait for {shown}"))
}
