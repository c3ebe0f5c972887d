//! Secrets: while a full setup with service roles runs (a server made from nothing, roles,
//! extensions, migrations, seeds, a second branch, a backup), no password is in any process's
//! argv, in any output but `db-endpoint`'s, or in any file but the 0600 credentials file and `.env`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::harness::{Project, contains};

/// Every distinct command line seen in /proc while `stop` is false, read as fast as the machine
/// allows (a child living a few milliseconds is caught; a 1 ms one may not be).
fn watch_command_lines(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(BTreeSet<Vec<u8>>, usize)> {
    std::thread::spawn(move || {
        let mut seen = BTreeSet::new();
        let mut sweeps = 0;
        while !stop.load(Ordering::SeqCst) {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let name = entry.file_name();
                if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
                    && !cmdline.is_empty()
                {
                    seen.insert(cmdline);
                }
            }
            sweeps += 1;
        }
        (seen, sweeps)
    })
}

/// Files under `dir` (not following symlinks) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8], found: &mut Vec<PathBuf>, scanned: &mut usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        let path = entry.path();
        if kind.is_dir() {
            files_containing(&path, needle, found, scanned);
        } else if kind.is_file() {
            *scanned += 1;
            if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
}

#[test]
fn no_password_in_argv_output_or_stray_files() {
    let mut p = Project::new("native");
    let admin_password = "Adm1n-s3cret-4f1b9c";
    p.set("XTASK_PASSWORD", admin_password);
    p.service("accounts", "name = \"accounts\"\nextensions = [\"pgcrypto\"]");
    p.service("notes", "name = \"notes\"\nreads = [\"accounts\"]");
    p.write("migrations/accounts/20240101000000_users.up.sql", "CREATE TABLE users (id int PRIMARY KEY);");
    p.write("migrations/notes/20240101000000_notes.up.sql", "CREATE TABLE notes (id int, body text);");
    p.write("seeds/notes/notes.sql", "INSERT INTO notes VALUES (1, 'hello');");

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_command_lines(stop.clone());
    let mut outputs = Vec::new();
    for args in [
        &["setup"][..],
        &["setup"],
        &["migrate"],
        &["db-status"],
        &["db-status", "--json"],
        &["setup", "--branch", "feature/secret"],
        &["branches"],
        &["backup", "--db", "notes"],
        &["seed", "--db", "notes"],
        &["wipe", "--branch", "feature/secret"],
        &["db-down"],
        &["db-up"],
        &["setup"],
    ] {
        let (out, err) = p.ok_err(args);
        outputs.push((args.join(" "), out + &err));
    }
    stop.store(true, Ordering::SeqCst);
    let (command_lines, sweeps) = watcher.join().unwrap();
    assert!(sweeps > 20, "the watcher swept /proc only {sweeps} times");
    let ours: Vec<String> = command_lines
        .iter()
        .map(|c| String::from_utf8_lossy(c).replace('\0', " "))
        .filter(|c| c.contains(&p.name) || c.contains("postgres") || c.contains("pg_"))
        .collect();
    assert!(ours.iter().any(|c| c.contains("pg_ctl")), "the watcher saw no pg_ctl: {ours:#?}");
    assert!(ours.iter().any(|c| c.contains("pg_dump")), "the watcher saw no pg_dump: {ours:#?}");

    let credentials = p.data_dir().join(".xtask-credentials.toml");
    let text = std::fs::read_to_string(&credentials).unwrap();
    let mut passwords: Vec<String> = text
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .map(|(_, value)| value.trim_matches('"').to_owned())
        .collect();
    assert_eq!(passwords.len(), 2, "{text}");
    passwords.push(admin_password.to_owned());
    let endpoint = p.ok(&["db-endpoint", "--db", "notes"]);
    contains(&endpoint, &passwords[1]);

    let env = p.path().join(".env");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&credentials).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&env).unwrap().permissions().mode() & 0o777, 0o600);
    let mut scanned = 0;
    for password in &passwords {
        for line in &command_lines {
            assert!(
                !line.windows(password.len()).any(|w| w == password.as_bytes()),
                "a password is on a command line: {}",
                String::from_utf8_lossy(line)
            );
        }
        for (command, output) in &outputs {
            assert!(!output.contains(password.as_str()), "`{command}` printed a password:\n{output}");
        }
        let mut found = Vec::new();
        files_containing(p.path(), password.as_bytes(), &mut found, &mut scanned);
        found.retain(|f| f != &credentials && f != &env);
        assert!(found.is_empty(), "a password is in {found:?}");
    }
    assert!(scanned > 100, "only {scanned} files scanned: is the cluster under the data directory?");
    assert!(p.data_dir().read_dir().unwrap().count() > 1);
    eprintln!(
        "secrets: {} distinct command lines over {sweeps} sweeps of /proc, {} outputs, {scanned} file reads, \
         {} passwords: none leaked",
        command_lines.len(),
        outputs.len(),
        passwords.len()
    );
}
