//! The native engine: a private cluster made with the machine's own `initdb`, run with `pg_ctl`.
//!
//! One cluster per project per machine (in the data directory), shared by every worktree. PostgreSQL
//! refuses to run as root, so as root every server binary runs as the `postgres` system user, which
//! owns the cluster's own directory (`pgdata`, its server log inside) and nothing else: the data
//! directory, where root writes its lock, marker and credentials, stays root's (see fsafe.rs).

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::admin_password::{self, AdminPassword};
use super::server_binaries::{self, Binaries};
use super::{ClientProgram, ClientTool, Engine, NEXT_SETUP, NEXT_UP, ServerState, Status, UpOutcome, tail};
use crate::config::{Config, EngineKind};
use crate::conn::{Endpoint, ReadyWatch, wait_ready};
use crate::{fsafe, os, procs};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Marks a data directory as made by this tool, so it is never confused with someone else's folder.
const DIR_MARKER: &str = ".xtask-data-dir";
const MARKER_TEXT: &str = "data directory of an xtask native PostgreSQL cluster\n";
/// The server log; inside pgdata, where the server's user may write (the data directory is root's).
const LOG_NAME: &str = "server.log";
/// Where earlier versions kept the server log, in the data directory itself.
const OLD_LOG_NAME: &str = "server.log";

pub struct Native {
    dir: PathBuf,
    pgdata: PathBuf,
    log: PathBuf,
    port: u16,
    /// The major `postgres` pins, if any.
    pinned: Option<u32>,
    endpoint: Endpoint,
    admin: AdminPassword,
}

impl Native {
    pub fn new(config: &Config) -> Result<Native> {
        let dir = config.data_dir.clone();
        let pgdata = dir.join("pgdata");
        // Before anything in the data directory is read: by any command, not only `up`.
        if let Some((uid, _)) = run_as_user_if_any() {
            reclaim_old_layout(&dir, uid)?;
        }
        let admin = AdminPassword::choose(config, pgdata.join("PG_VERSION").exists())?;
        Ok(Native {
            log: pgdata.join(LOG_NAME),
            pgdata,
            dir,
            port: config.port,
            pinned: config.postgres,
            endpoint: Endpoint::local(config.port, &config.user, admin.first()),
            admin,
        })
    }

    pub fn is_running(&self) -> bool {
        self.running_pid_and_port().is_some()
    }

    /// Whether this project has a cluster here (running or not).
    pub fn has_cluster(&self) -> bool {
        self.cluster_major().is_some()
    }

    fn cluster_major(&self) -> Option<u32> {
        let text = self.read_cluster_file("PG_VERSION")?;
        String::from_utf8(text).ok()?.trim().parse().ok()
    }

    /// A small file of the cluster's (`PG_VERSION`, `postmaster.pid`, `global/pg_control`), read
    /// only when it is a regular file of the server's user and not through a link at its name: as
    /// root, the `postgres` user could otherwise point it at any file (or a FIFO, which would hang).
    fn read_cluster_file(&self, relative: &str) -> Option<Vec<u8>> {
        use std::io::Read;
        let owner = match run_as_user() {
            Ok(Some((uid, _))) => uid,
            Ok(None) => crate::fsafe::euid(),
            Err(_) => return None,
        };
        let mut bytes = Vec::new();
        let file = crate::fsafe::open_read(&self.pgdata.join(relative), owner).ok()?;
        file.take(1 << 16).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// The postmaster's pid and port from `postmaster.pid`, when that process is alive.
    fn running_pid_and_port(&self) -> Option<(i32, u16)> {
        let (pid, port) = self.pid_file()?;
        self.is_our_postmaster(pid).then_some((pid, port?))
    }

    /// A PostgreSQL process working in our data directory: after a crash the pid in postmaster.pid
    /// may belong to another cluster's server by now. Where /proc cannot tell, the pid is trusted.
    fn is_our_postmaster(&self, pid: i32) -> bool {
        process_is_postgres(pid)
            && match (procs::cwd(pid), std::fs::canonicalize(&self.pgdata)) {
                (Some(cwd), Ok(pgdata)) => cwd == pgdata,
                _ => true,
            }
    }

    /// The pid (and port, once the server listens) that `postmaster.pid` names, alive or not.
    fn pid_file(&self) -> Option<(i32, Option<u16>)> {
        let text = String::from_utf8(self.read_cluster_file("postmaster.pid")?).ok()?;
        let lines: Vec<&str> = text.lines().collect();
        let pid: i32 = lines.first()?.trim().parse().ok()?;
        Some((pid, lines.get(3).and_then(|l| l.trim().parse().ok())))
    }

    /// The pid in a `postmaster.pid` left behind by a server that was killed (kill -9, a crash, a
    /// power cut): that process is gone, a zombie, or another program by now.
    fn stale_pid(&self) -> Option<i32> {
        self.pid_file().map(|(pid, _)| pid).filter(|pid| !self.is_our_postmaster(*pid))
    }

    /// Clears the way after a killed server: waits for its children to exit (they notice within a
    /// moment), then removes its `postmaster.pid`, which PostgreSQL itself refuses to replace while
    /// the pid in it still exists (a zombie not yet reaped, or a pid reused by another program).
    fn clear_stale_pid(&self, pid: i32) -> Result<()> {
        let start = std::time::Instant::now();
        let mut left = processes_in(&self.pgdata);
        while !left.is_empty() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
            left = processes_in(&self.pgdata);
        }
        if !left.is_empty() {
            let pids: Vec<String> = left.iter().map(i32::to_string).collect();
            bail!(
                "the server of {} was killed (its postmaster.pid names pid {pid}, {}), but \
                 process(es) {} still run in that directory: wait for them to exit or stop them \
                 (`kill {}`), then run `cargo xtask db-up`",
                self.pgdata.display(),
                pid_fate(pid),
                pids.join(", "),
                pids.join(" ")
            );
        }
        let file = self.pgdata.join("postmaster.pid");
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("remove the stale {}", file.display()));
            }
            _ => {}
        }
        eprintln!(
            "the server in {} was killed or crashed (its postmaster.pid names pid {pid}, {}); removed that \
             stale postmaster.pid, PostgreSQL recovers from its write-ahead log on start",
            self.pgdata.display(),
            pid_fate(pid)
        );
        Ok(())
    }

    /// A server still running although its data directory was deleted (it stops itself within about
    /// a minute, and holds the port until then): its postmaster's pid.
    fn orphan(&self) -> Option<i32> {
        if self.pgdata.join("PG_VERSION").exists() {
            return None;
        }
        orphaned_postmaster(&self.pgdata)
    }

    /// Stops the server of a deleted data directory (nothing is left to save) and waits for it.
    fn stop_orphan(&self, pid: i32) -> Result<()> {
        // SAFETY: sends SIGQUIT (immediate shutdown) to the postmaster identified above.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        let start = std::time::Instant::now();
        while process_is_postgres(pid) || !processes_in(&self.pgdata).is_empty() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!(
                    "the data directory {} was deleted while its server ran, and that server (pid {pid}) \
                     did not stop within 10 s: stop it (`kill -QUIT {pid}`), then run `cargo xtask setup`",
                    self.pgdata.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "the data directory {} was deleted while its server ran: stopped that server (pid {pid}). The \
             databases it held are lost; making a new, empty cluster",
            self.pgdata.display()
        );
        Ok(())
    }

    fn binaries(&self) -> Result<Binaries> {
        server_binaries::for_cluster(self.cluster_major(), self.pinned, &self.pgdata)
    }

    /// A command for a server binary; as root it runs as the `postgres` user.
    fn server_command(
        &self,
        bins: &Binaries,
        program: &str,
        args: Vec<OsString>,
    ) -> Result<duct::Expression> {
        let expression = duct::cmd(bins.dir.join(program), args)
            .dir(&self.dir)
            .stdin_null()
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked();
        Ok(match run_as_user()? {
            Some((uid, gid)) => expression.before_spawn(move |command| {
                command.uid(uid).gid(gid);
                Ok(())
            }),
            None => expression,
        })
    }

    fn run(&self, bins: &Binaries, program: &str, args: Vec<OsString>) -> Result<String> {
        let output = self
            .server_command(bins, program, args)?
            .run()
            .with_context(|| format!("run {}", bins.dir.join(program).display()))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!("{program} failed ({}):\n{}", output.status, shown_output(&text, &self.endpoint.password));
        }
        Ok(text)
    }

    /// Makes the data directory ours: created here, or already carrying our marker, or empty. A
    /// directory holding anything else (say `XTASK_DATA_DIR=/tmp`) is refused, never re-owned; so is
    /// one another user owns or may write in (someone could have made it, marker and all, to plant
    /// links where this tool writes).
    fn claim_dir(&self) -> Result<()> {
        let server_user = run_as_user()?;
        let marker = self.dir.join(DIR_MARKER);
        let ours = std::fs::symlink_metadata(&marker).is_ok() || self.cluster_major().is_some();
        // Our own lock files (the docker engine keeps its lock here too) do not count.
        let occupied = std::fs::read_dir(&self.dir).is_ok_and(|entries| {
            entries.flatten().any(|e| !e.file_name().to_string_lossy().starts_with(".xtask"))
        });
        if !ours && occupied {
            bail!(
                "the data directory {} already holds other files: the native engine keeps its cluster in a \
                 directory of its own. Choose a new or empty one with XTASK_DATA_DIR or `data-dir`",
                self.dir.display()
            );
        }
        fsafe::check_dir(&self.dir, fsafe::euid(), "the data directory")?;
        if std::fs::symlink_metadata(&marker).is_ok() {
            return Ok(());
        }
        if ours {
            // A cluster laid out by an earlier version of this tool, before the marker existed.
            return write_marker(&marker);
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("create the data directory {}", self.dir.display()))?;
        // As root the server's user only needs to pass through, to its own pgdata below.
        let mode = if server_user.is_some() { 0o711 } else { 0o700 };
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(mode))?;
        if server_user.is_some() {
            check_reachable_by_others(&self.dir)?;
        }
        write_marker(&marker)
    }

    fn lock_file(&self) -> PathBuf {
        self.dir.join(".xtask.lock")
    }

    /// Serialises up, down, teardown and the admin password's rotation between processes
    /// (worktrees running setup at once).
    fn lock(&self) -> Result<std::fs::File> {
        os::exclusive_lock(&self.lock_file())
    }

    /// initdb into a scratch directory renamed into place, so a crash never leaves half a cluster.
    fn init(&mut self, bins: &Binaries) -> Result<()> {
        eprintln!("creating a PostgreSQL {} cluster in {}", bins.major, self.pgdata.display());
        let scratch = self.dir.join("pgdata.init");
        if std::fs::symlink_metadata(&scratch).is_ok() {
            std::fs::remove_dir_all(&scratch).or_else(|_| std::fs::remove_file(&scratch))?;
        }
        // initdb as the server's user fills an empty directory it owns; it could not create one
        // in root's data directory.
        let server_user = run_as_user()?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&scratch)
            .with_context(|| format!("create {}", scratch.display()))?;
        if let Some((uid, gid)) = server_user {
            std::os::unix::fs::chown(&scratch, Some(uid), Some(gid))
                .with_context(|| format!("give {} to the postgres user", scratch.display()))?;
        }
        self.admin.save_before_create()?;
        let password_file = self.dir.join("initdb.pw");
        write_private(&password_file, &self.endpoint.password, server_user)?;
        let result = self.run(
            bins,
            "initdb",
            vec![
                "--pgdata".into(),
                scratch.clone().into(),
                "--username".into(),
                self.endpoint.user.clone().into(),
                format!("--pwfile={}", password_file.display()).into(),
                "--auth=scram-sha-256".into(),
                "--encoding=UTF8".into(),
                "--no-locale".into(),
                "--no-sync".into(),
            ],
        );
        let _ = std::fs::remove_file(&password_file);
        result.context("initialise the cluster")?;
        let conf = "\n# Added by xtask: TCP on loopback only, no Unix socket to collide with a system server.\n\
                    listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n";
        let owner = server_user.map_or_else(fsafe::euid, |(uid, _)| uid);
        fsafe::append(&scratch.join("postgresql.conf"), owner, conf)?;
        std::fs::rename(&scratch, &self.pgdata).context("move the new cluster into place")?;
        Ok(())
    }

    fn start(&mut self, bins: &Binaries) -> Result<()> {
        if let Some(holder) = os::port_holder(self.port) {
            bail!(
                "port {} on 127.0.0.1 is taken by {holder}: stop it, or choose a free port with \
                 `port` in [workspace.metadata.xtask] or XTASK_PORT",
                self.port
            );
        }
        self.run(
            bins,
            "pg_ctl",
            vec![
                "start".into(),
                "--pgdata".into(),
                self.pgdata.clone().into(),
                "--log".into(),
                self.log.clone().into(),
                "--no-wait".into(),
                "-o".into(),
                format!("-p {}", self.port).into(),
            ],
        )
        .context("start the cluster")?;
        self.wait()
    }

    /// Waits for a server that is (or was) running, on the configured port.
    fn wait_running(&mut self) -> Result<()> {
        if let Some((pid, port)) = self.running_pid_and_port()
            && port != self.port
        {
            bail!(
                "the cluster in {} runs on port {port} (pid {pid}) but the configuration says {}: \
                 run `cargo xtask db-down` then `cargo xtask db-up` to restart it on the new port",
                self.pgdata.display(),
                self.port
            );
        }
        self.wait()
    }

    /// Waits until the server accepts the admin login (see [`AdminPassword::wait_ready`]).
    fn wait(&mut self) -> Result<()> {
        let mut login = self.endpoint.clone();
        self.admin.wait_ready(&mut login, |login| self.wait_with(login))?;
        self.endpoint = login;
        Ok(())
    }

    fn wait_with(&self, login: &Endpoint) -> Result<()> {
        let watch = ReadyWatch {
            died: &|| (!self.is_running()).then(|| "the postgres process exited".to_owned()),
            log_tail: &|| self.log_tail(),
        };
        wait_ready(login, READY_TIMEOUT, &watch)
    }

    /// Read without following links, and only when the server's user wrote it: as root, the
    /// server's user could otherwise make root show any file here.
    fn log_tail(&self) -> String {
        use std::io::Read;
        let owner = run_as_user().ok().flatten().map_or_else(fsafe::euid, |(uid, _)| uid);
        let mut text = String::new();
        let read = fsafe::open_read(&self.log, owner).and_then(|mut file| {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            text = String::from_utf8_lossy(&bytes).into_owned();
            Ok(())
        });
        match read {
            Ok(()) => format!("server log {} (last lines):\n{}", self.log.display(), tail(&text, 15)),
            Err(error) => format!("server log {}: {error:#}", self.log.display()),
        }
    }

    /// Brings the server up; `up` then settles the admin password.
    fn bring_up(&mut self) -> Result<UpOutcome> {
        if self.is_running() && self.wait_running().is_ok() {
            return Ok(UpOutcome::AlreadyRunning);
        }
        self.claim_dir()?;
        let _lock = self.lock()?;
        // Another process may have started it while we waited for the lock; or it died meanwhile.
        if self.is_running() {
            match self.wait_running() {
                Ok(()) => return Ok(UpOutcome::AlreadyRunning),
                Err(error) if self.is_running() => return Err(error),
                Err(_) => {}
            }
        }
        if let Some(pid) = self.orphan() {
            self.stop_orphan(pid)?;
        }
        if let Some(pid) = self.stale_pid() {
            self.clear_stale_pid(pid)?;
        }
        let bins = self.binaries()?;
        let outcome = if self.cluster_major().is_none() {
            self.init(&bins)?;
            UpOutcome::Created
        } else {
            UpOutcome::Started
        };
        self.start(&bins)?;
        Ok(outcome)
    }
}

impl Engine for Native {
    fn surely_down(&self) -> bool {
        self.read_cluster_file("PG_VERSION").is_some() && self.pid_file().is_none()
    }

    fn kind(&self) -> EngineKind {
        EngineKind::Native
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn up(&mut self) -> Result<UpOutcome> {
        if self.admin.is_configured() {
            admin_password::warn_if_weak(&self.endpoint.password, &self.endpoint.user, &self.dir);
        }
        if let (Some(made), Some(pinned)) = (self.cluster_major(), self.pinned)
            && made != pinned
        {
            bail!("{}", server_binaries::major_mismatch(&self.pgdata, made, pinned));
        }
        let outcome = self.bring_up()?;
        let server = format!("the cluster in {}", self.pgdata.display());
        let lock = self.lock_file();
        self.admin.settle(&mut self.endpoint, &server, &lock)?;
        Ok(outcome)
    }

    fn down(&self) -> Result<bool> {
        if !self.is_running() {
            eprintln!("the cluster in {} is not running; nothing to stop", self.pgdata.display());
            return Ok(false);
        }
        let bins = self.binaries()?;
        let args: Vec<OsString> = vec![
            "stop".into(),
            "--pgdata".into(),
            self.pgdata.clone().into(),
            "--mode=fast".into(),
            "--wait".into(),
        ];
        self.run(&bins, "pg_ctl", args).context("stop the cluster")?;
        Ok(true)
    }

    fn status(&self) -> Result<Status> {
        let pgdata = self.pgdata.display();
        let Some(major) = self.cluster_major() else {
            let detail = match self.orphan() {
                Some(pid) => format!(
                    "the data directory {pgdata} was deleted while its server ran (pid {pid}, still holding \
                     port {} until it stops): the databases it held are lost",
                    self.port
                ),
                None => format!("no cluster in {pgdata}"),
            };
            return Ok(Status::new(ServerState::Absent, detail, Some(NEXT_SETUP)));
        };
        let pin = match self.pinned {
            Some(pinned) if pinned != major => format!(
                " (`postgres` pins {pinned}: pin {major} again, or move with backup, teardown, setup, restore)"
            ),
            _ => String::new(),
        };
        Ok(match (self.running_pid_and_port(), self.stale_pid()) {
            (Some((pid, port)), _) => Status::new(
                ServerState::Running,
                format!("PostgreSQL {major} cluster in {pgdata}, pid {pid}, port {port}{pin}"),
                None,
            ),
            (None, Some(pid)) => Status::new(
                ServerState::Stopped,
                format!(
                    "PostgreSQL {major} cluster in {pgdata}, not running: killed or crashed (its postmaster.pid \
                     names pid {pid}, {}); its data is kept",
                    pid_fate(pid)
                ),
                Some(NEXT_UP),
            ),
            (None, None) => Status::new(
                ServerState::Stopped,
                format!("PostgreSQL {major} cluster in {pgdata}, stopped"),
                Some(NEXT_UP),
            ),
        })
    }

    fn destroy(&self) -> Result<()> {
        if !self.dir.join(DIR_MARKER).exists() && self.cluster_major().is_none() {
            return Ok(()); // nothing of ours here
        }
        if self.is_running() {
            self.down()?;
        }
        for leftover in [&self.pgdata, &self.dir.join("pgdata.init")] {
            if leftover.exists() {
                std::fs::remove_dir_all(leftover)
                    .with_context(|| format!("delete {}", leftover.display()))?;
            }
        }
        for file in [&self.dir.join(OLD_LOG_NAME), &self.dir.join(DIR_MARKER), &self.lock_file()] {
            let _ = std::fs::remove_file(file);
        }
        // The directory itself goes only when nothing else is in it.
        let _ = std::fs::remove_dir(&self.dir);
        Ok(())
    }

    /// The cluster's own client (the server's major version), else one able to serve it.
    fn client_tool(&self, program: ClientProgram) -> Result<ClientTool> {
        match self.binaries() {
            Ok(bins) => server_binaries::client_for(program.name(), &bins).map(ClientTool::Host),
            Err(_) => server_binaries::find_client(program.name()).map(ClientTool::Host),
        }
    }

    fn fallback_endpoint(&self) -> Option<Endpoint> {
        self.admin.fallback_login(&self.endpoint)
    }

    fn check_port(&self, task: &str) -> Result<()> {
        match self.running_pid_and_port() {
            Some((pid, port)) if port != self.port => bail!(
                "refusing to {task}: this project's cluster in {} runs on port {port} (pid {pid}), but the \
                 configuration (`port` in [workspace.metadata.xtask] or XTASK_PORT) says {}, where another \
                 server may answer: set it back to {port}, or run `cargo xtask db-down` then `cargo xtask \
                 db-up` to move the cluster; nothing was changed",
                self.pgdata.display(),
                self.port
            ),
            _ => Ok(()),
        }
    }

    fn check_identity(&self, task: &str, admin: &mut postgres::Client) -> Result<()> {
        let server = super::identity::of_server(admin)?;
        let server = &server;
        let control = self.read_cluster_file("global/pg_control");
        let ours = format!("the cluster in {}", self.pgdata.display());
        let identifier = control.as_deref().and_then(super::identity::system_identifier_in);
        super::identity::check(task, self.port, server, &ours, identifier)
    }
}

/// As root, the uid and gid of the `postgres` user that runs the server; otherwise nobody else.
fn run_as_user() -> Result<Option<(u32, u32)>> {
    if !os::is_root() {
        return Ok(None);
    }
    os::user_ids("postgres").map(Some).context(
        "PostgreSQL refuses to run as root and there is no `postgres` system user to run it as: \
         create one (`useradd --system --home-dir /var/lib/postgresql postgres`) or run as a normal user",
    )
}

/// Earlier versions gave the whole data directory to the `postgres` user, which could then
/// plant links where root writes. Such a directory (ours: it holds our marker or a cluster)
/// goes back to root, keeping the cluster; what the server's user could have made beside it
/// (its server log, links) is removed. A link planted before and left by a kill half-way is
/// harmless: every file here is opened without following links (fsafe.rs).
fn reclaim_old_layout(dir: &Path, server_uid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else { return Ok(()) };
    let ours = dir.join(DIR_MARKER).exists() || dir.join("pgdata/PG_VERSION").exists();
    if meta.uid() != server_uid || !ours || meta.mode() & 0o022 != 0 {
        return Ok(());
    }
    std::os::unix::fs::chown(dir, Some(0), Some(0))
        .with_context(|| format!("give {} back to root", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        let planted = meta.file_type().is_symlink() || meta.uid() != fsafe::euid();
        if planted && !meta.is_dir() {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("remove {}, which root did not make", entry.path().display()))?;
        }
    }
    eprintln!(
        "the data directory {} belonged to the postgres user (as earlier versions made it), who could \
         plant links where root writes: it is root's now (mode 711); the cluster in pgdata stays the \
         postgres user's, and its server log is {}",
        dir.display(),
        dir.join("pgdata").join(LOG_NAME).display()
    );
    Ok(())
}

/// As root, the `postgres` user when there is one (`run_as_user` says what is missing).
fn run_as_user_if_any() -> Option<(u32, u32)> {
    run_as_user().ok().flatten()
}

/// The `postgres` user must be able to walk down to the data directory.
fn check_reachable_by_others(dir: &Path) -> Result<()> {
    if let Some((ancestor, mode)) = fsafe::closed_to_others(dir)? {
        bail!(
            "the data directory {} is inside {}, which the postgres user cannot enter (mode {mode:o}): \
             choose another place with XTASK_DATA_DIR or `data-dir`, or `chmod o+x {}`",
            dir.display(),
            ancestor.display(),
            ancestor.display()
        );
    }
    Ok(())
}

fn write_marker(marker: &Path) -> Result<()> {
    use std::io::Write;
    let mut file = match fsafe::create_new(marker, 0o644) {
        Ok(file) => file,
        // Another setup claimed the directory at the same moment (the lock lives inside it, so
        // claiming comes first); the directory was checked to be ours, so its marker is too.
        Err(error)
            if already_exists(&error) && std::fs::symlink_metadata(marker).is_ok_and(|m| m.is_file()) =>
        {
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    file.write_all(MARKER_TEXT.as_bytes()).with_context(|| format!("write {}", marker.display()))
}

fn already_exists(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
    })
}

/// What became of the pid a stale postmaster.pid names.
fn pid_fate(pid: i32) -> &'static str {
    if process_is_postgres(pid) {
        "which is another server's process now"
    } else if procs::alive(pid) {
        "which is another program now"
    } else {
        "which is gone"
    }
}

fn process_is_postgres(pid: i32) -> bool {
    // A pid reused by another program, or a zombie, is not our server (Linux tells; elsewhere trust
    // the pid).
    procs::alive(pid)
        && procs::name(pid).is_none_or(|name| matches!(name.as_str(), "postgres" | "postmaster"))
}

/// Live PostgreSQL processes whose working directory is `dir` (a server's postmaster and children
/// run in their data directory; a shell that happens to be there does not count). Linux only;
/// elsewhere none are found. Zombies have no working directory.
fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(real) = std::fs::canonicalize(dir) else { return Vec::new() };
    procs::all()
        .into_iter()
        .filter(|pid| procs::cwd(*pid).is_some_and(|cwd| cwd == real))
        .filter(|pid| process_is_postgres(*pid))
        .collect()
}

/// The postmaster started (by pg_ctl, as `postgres -D <pgdata> ...`) on `pgdata`, whose working
/// directory has since been deleted. Linux only.
fn orphaned_postmaster(pgdata: &Path) -> Option<i32> {
    let wanted = pgdata.as_os_str().as_encoded_bytes();
    procs::all().into_iter().find(|pid| {
        let deleted =
            procs::cwd(*pid).is_some_and(|cwd| cwd.as_os_str().as_encoded_bytes().ends_with(b" (deleted)"));
        let args = procs::args(*pid);
        let on_pgdata = args.windows(2).any(|pair| pair[0] == b"-D" && pair[1] == wanted);
        deleted && on_pgdata && process_is_postgres(*pid)
    })
}

/// A new 0600 file holding `content`, given to the server's user when there is one.
fn write_private(path: &Path, content: &str, server_user: Option<(u32, u32)>) -> Result<()> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut file = fsafe::create_replacing(path, 0o600)?;
    file.write_all(content.as_bytes()).with_context(|| format!("write {}", path.display()))?;
    if let Some((uid, gid)) = server_user {
        // SAFETY: fchown on a descriptor we own: the file we just made, whatever its name is now.
        if unsafe { libc::fchown(file.as_raw_fd(), uid, gid) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("chown {}", path.display()));
        }
    }
    Ok(())
}

/// A server program's output, for an error message: its last lines, without the statements
/// initdb may echo (they can hold the password) and with the password itself redacted.
fn shown_output(text: &str, password: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .filter(|line| !line.to_ascii_uppercase().contains("PASSWORD"))
        .filter(|line| !line.trim_start().to_ascii_uppercase().starts_with("STATEMENT"))
        .map(|line| if password.is_empty() { line.to_owned() } else { line.replace(password, "***") })
        .collect();
    tail(&lines.join("\n"), 12)
}

#[cfg(test)]
mod tests {
    use super::shown_output;

    #[test]
    fn initdb_failures_show_no_statement_and_no_password() {
        let output = "running bootstrap script ... ok\n\
                      performing post-bootstrap initialization ... 2026-01-01 FATAL:  syntax error\n\
                      STATEMENT:  ALTER USER \"a'b\" WITH PASSWORD E'hunter2-secret';\n\
                      \n\
                      initdb: error: removing data directory\n\
                      echoed hunter2-secret\n";
        let shown = shown_output(output, "hunter2-secret");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("ALTER USER"), "{shown}");
        assert!(shown.contains("initdb: error: removing data directory"), "{shown}");
        assert!(shown.contains("echoed ***"), "{shown}");
    }
}
