//! Backups of this branch's databases: `backup` dumps them into backups/ (pg_dump's custom format),
//! `restore` puts one back after backing up what is there, `wipe --backup` dumps before dropping.
//!
//! pg_dump and pg_restore run where the engine says (`Engine::client_tool`): the native cluster's
//! own binaries, inside the container for docker, the newest on this machine for an external
//! server. They log in as the admin user, the password in their environment only.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{
    archive, backup_files, connect_running, grant_reads_of, human_size, refuse_remote_without_force,
};
use crate::admin::Admin;
use crate::engine::{self, ClientProgram, ClientTool, Engine};
use crate::workspace::{Ctx, Database};
use crate::{os, scratch, signals};

/// Where backups go, under the workspace root.
const DIR: &str = "backups";
/// The first bytes of every pg_dump archive in custom format.
const MAGIC: &[u8] = b"PGDMP";
/// Longest branch part of a file name; a longer one is cut and marked with a hash of the branch.
const MAX_SLUG_BYTES: usize = 60;

/// A backup written to disk.
pub struct Backup {
    pub path: PathBuf,
    pub size: u64,
}

/// `cargo xtask backup [--db NAME]`: one file per database, each path on stdout.
pub fn backup(ctx: &Ctx, db: Option<&str>) -> Result<()> {
    let engine = engine::select(ctx)?;
    let mut admin = connect_running(engine.as_ref(), "backup")?;
    let databases = ctx.select_databases(db)?;
    let existing = existing_names(&mut admin)?;
    if let Some(missing) = databases.iter().find(|d| !existing.contains(&d.name.to_string())) {
        bail!(
            "database {} (`{}` of branch `{}`) does not exist, so there is nothing to back up: run \
             `cargo xtask setup` to create it",
            missing.name,
            missing.logical,
            ctx.branch.name
        );
    }
    for database in &databases {
        if crate::invalid::is_invalid(admin.client(), database.name.as_str())? {
            bail!(
                "{}, so there is nothing to back up: run `cargo xtask setup` to drop it and make it anew",
                crate::invalid::what_happened(database.name.as_str())
            );
        }
    }
    for database in &databases {
        let backup = dump(ctx, engine.as_ref(), database)?;
        report("backup", database, &backup);
        println!("{}", backup.path.display());
    }
    Ok(())
}

/// Backs up each of `databases` that exists before `task` changes it; the first failure stops
/// `task` before anything has changed.
pub(super) fn back_up_existing(
    ctx: &Ctx,
    engine: &dyn Engine,
    admin: &mut Admin,
    databases: &[Database],
    task: &str,
) -> Result<Vec<Backup>> {
    let existing = existing_names(admin)?;
    let mut written = Vec::new();
    for database in databases.iter().filter(|d| existing.contains(&d.name.to_string())) {
        if crate::invalid::is_invalid(admin.client(), database.name.as_str())? {
            eprintln!(
                "{task}: {}; nothing to back up",
                crate::invalid::what_happened(database.name.as_str())
            );
            continue;
        }
        let backup = dump(ctx, engine, database).with_context(|| {
            format!(
                "{task} stopped before changing anything: the backup of database {} failed",
                database.name
            )
        })?;
        report(task, database, &backup);
        written.push(backup);
    }
    Ok(written)
}

/// `cargo xtask restore FILE [--db NAME] [--force]`: the archive, checked to be a dump of that
/// database by its owner, is restored into a new database made and labelled like the branch
/// database, as the database's own role (never as a superuser: the dump's functions run during
/// the restore), which replaces the branch database only once the restore has succeeded (see
/// `swap`); the branch database is backed up first.
pub fn restore(ctx: &Ctx, file: &Path, db: Option<&str>, force: bool) -> Result<()> {
    check_archive(file)?;
    let database = restore_target(ctx, file, db)?;
    let engine = engine::select(ctx)?;
    refuse_remote_without_force(engine.as_ref(), force, "restore")?;
    let mut admin = connect_running(engine.as_ref(), "restore")?;
    let (project, branch) = (ctx.config.project.as_str(), ctx.branch.name.as_str());
    let name = database.name.as_str();
    let tool = engine.client_tool(ClientProgram::PgRestore)?;
    let toc = read_toc(&tool, engine.endpoint(), file).with_context(|| {
        format!("restore {} into database {name} failed; {name} is unchanged", file.display())
    })?;
    let all = ctx.databases();
    archive::check(&toc, file, &database, &all, &engine.endpoint().user)?;
    if let Some(role) = &database.spec.role
        && !admin.project_roles(project)?.contains(role)
    {
        bail!(
            "role {role}, which owns database `{}`, is not on the server as this project's role: run \
             `cargo xtask setup` first (it makes the project's roles, which the restored objects belong to)",
            database.logical
        );
    }
    let expected = (database.logical.as_str(), branch);
    if let Some(aside) = crate::swap::put_back(&mut admin, name, project, expected)? {
        eprintln!(
            "restore: put database {name} back in place: an interrupted restore had left it as {aside}"
        );
    }
    eprintln!(
        "restore: {} into database {name} (`{}` of branch `{branch}`)",
        file.display(),
        database.logical
    );
    if crate::invalid::is_invalid(admin.client(), name)? {
        eprintln!(
            "restore: {}; nothing to back up, the restore replaces it",
            crate::invalid::what_happened(name)
        );
    } else {
        back_up_before_restore(ctx, engine.as_ref(), &mut admin, &database)?;
    }
    // The role restores its own objects; the admin makes the declared extensions beforehand, as setup does.
    let login = super::database_login(ctx, engine.endpoint(), &database)?;
    let made_by_admin: Vec<String> = toc
        .extensions()
        .into_iter()
        .filter(|e| database.spec.role.is_none() || database.spec.extensions.contains(e))
        .collect();

    let scratch_name = crate::scratch::name("restore", project)?;
    // From here Ctrl-C, SIGTERM and SIGHUP drop the half-restored copy; pg_restore is started with
    // the signals unblocked, so it stops too.
    scratch::drop_on_signal(engine.endpoint(), &scratch_name);
    scratch::drop_on_signals();
    // In use until the swap: a `setup` meanwhile must not take it for a leftover.
    admin.hold_scratch(&scratch_name)?;
    let new = crate::admin::NewDatabase {
        project,
        logical: &database.logical,
        branch,
        owner: database.spec.role.as_deref(),
        template: None,
        base: None,
        developer: ctx.developer_of_branch().map(|d| d.id.as_str()),
    };
    let filled = admin
        .create_from(&scratch_name, &new, None, |_, _| Ok(()))
        .and_then(|_| {
            crate::admin::enable_extensions(engine.endpoint(), &scratch_name, &made_by_admin).map(|_| ())
        })
        .and_then(|()| {
            // Those the new database has already (the declared ones, and any its template holds,
            // such as one a superuser put in template1) are left out: the role could not replay them.
            let list = toc.list_without(&installed_extensions(engine.endpoint(), &scratch_name)?);
            let restore = Restore { tool: &tool, login: &login, file, into: &scratch_name, list: &list };
            let as_role = database.spec.role.is_some();
            match older_server_than_client(&mut admin, &tool)? {
                Some(psql) => restore.through_psql(&psql, as_role),
                None => restore.run(as_role),
            }
        })
        // pg_dump (without --create) carries neither database-level grants nor `ALTER DATABASE
        // ... SET` settings: the current database's are copied (none when it does not exist), and
        // CONNECT for the declared readers.
        .and_then(|()| admin.copy_grants_and_settings(name, &scratch_name))
        .and_then(|()| grant_reads_of(&mut admin, engine.endpoint(), &all, &database, &scratch_name))
        .map(|_| ());
    if let Err(error) = filled {
        signals::park_if_interrupted();
        if let Err(dropped) = admin.drop_labelled(&scratch_name, project, Some(expected)) {
            eprintln!("warning: could not drop database {scratch_name}: {dropped:#}");
        }
        scratch::forget_on_signal(&scratch_name);
        return Err(error.context(format!(
            "restore {} into database {name} failed; {name} is unchanged",
            file.display()
        )));
    }
    // The swap is not undone by a signal, which waits for it to finish.
    scratch::forget_on_signal(&scratch_name);
    crate::swap::replace(&mut admin, &scratch_name, name, project, expected)
        .with_context(|| format!("restore {} into database {name}", file.display()))?;
    signals::park_if_interrupted();
    admin.release_scratch(&scratch_name)?;
    eprintln!("restore: database {name} now holds {}", file.display());
    Ok(())
}

/// The safety backup of a restore. A retry after a failed restore keeps one: when the newest
/// backup of this database and branch holds the same dump (nothing changed since), the new one is
/// deleted and that one named.
fn back_up_before_restore(
    ctx: &Ctx,
    engine: &dyn Engine,
    admin: &mut Admin,
    database: &Database,
) -> Result<()> {
    let previous = newest_backup(&ctx.root, database, &ctx.branch.name);
    let written = back_up_existing(ctx, engine, admin, std::slice::from_ref(database), "restore")?;
    if let (Some(new), Some(previous)) = (written.first(), previous)
        && backup_files::same_dump(&new.path, &previous)?
    {
        std::fs::remove_file(&new.path).with_context(|| format!("delete {}", new.path.display()))?;
        eprintln!(
            "restore: database {} is unchanged since {}, which stays its safety backup; the new copy was deleted",
            database.name,
            previous.display()
        );
    }
    Ok(())
}

/// The newest `<logical>--<branch>--*.dump` in backups/.
fn newest_backup(root: &Path, database: &Database, branch: &str) -> Option<PathBuf> {
    let prefix = format!("{}--{}--", database.logical, branch_slug(branch));
    let entries = std::fs::read_dir(root.join(DIR)).ok()?;
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix) && name.ends_with(".dump") && e.file_type().is_ok_and(|t| t.is_file())
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// Dumps `database` into backups/: written under a temporary name, synced, then given its final
/// name, so a failed dump leaves no file and a backup is never overwritten. The temporary files
/// of killed runs are swept first.
fn dump(ctx: &Ctx, engine: &dyn Engine, database: &Database) -> Result<Backup> {
    let dir = backups_dir(&ctx.root)?;
    sweep_partials(&dir)?;
    let stem = file_stem(&database.logical, &ctx.branch.name, &utc_stamp());
    let (partial, file) = backup_files::create_partial(&dir, &stem)?;
    let written = file
        .try_clone()
        .context("share the backup file with pg_dump")
        .and_then(|out| run_pg_dump(engine, database.name.as_str(), out))
        .and_then(|()| file.sync_all().with_context(|| format!("sync {}", partial.display())))
        .and_then(|()| publish(&partial, &dir, &stem));
    let _ = std::fs::remove_file(&partial);
    let path = written?;
    let size = std::fs::metadata(&path).with_context(|| format!("read {}", path.display()))?.len();
    Ok(Backup { path, size })
}

/// Deletes what killed backups left in `dir`, saying so.
pub(super) fn sweep_partials(dir: &Path) -> Result<()> {
    for name in backup_files::sweep_partials(dir)? {
        eprintln!("deleted {name} in {}, left by a backup that was killed", dir.display());
    }
    Ok(())
}

fn run_pg_dump(engine: &dyn Engine, name: &str, file: File) -> Result<()> {
    let tool = engine.client_tool(ClientProgram::PgDump)?;
    let args: Vec<OsString> =
        ["--format=custom", "--no-password", "--dbname", name].into_iter().map(OsString::from).collect();
    let command = tool.command(engine.endpoint(), name, &args, false).stdin_null().stdout_file(file);
    run_client(&tool, os::dies_with_parent(command), name)
}

/// The archive's table of contents, as pg_restore lists it.
fn read_toc(tool: &ClientTool, endpoint: &crate::conn::Endpoint, file: &Path) -> Result<archive::Toc> {
    let archive = File::open(file).with_context(|| format!("read {}", file.display()))?;
    let args: Vec<OsString> = vec!["--list".into()];
    let output = os::dies_with_parent(tool.command(endpoint, &endpoint.admin_db, &args, false))
        .stdin_file(archive)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("run {}", tool.describe()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "{} --list cannot read {} ({}):\n{}{}",
            tool.describe(),
            file.display(),
            output.status,
            stderr.trim_end(),
            advice(tool, &stderr)
        );
    }
    Ok(archive::Toc::parse(&String::from_utf8_lossy(&output.stdout)))
}

/// A pg_restore of `file` into database `into`, replaying the entries of `list`, logged in as
/// `login` (the database's role, or the admin for a database without one).
struct Restore<'a> {
    tool: &'a ClientTool,
    login: &'a crate::conn::Endpoint,
    file: &'a Path,
    into: &'a str,
    list: &'a str,
}

/// pg_restore 17 and newer set `transaction_timeout`, which servers before 17 refuse (the
/// managed client tools are PostgreSQL 18's): then the restore goes through a psql beside the
/// pg_restore, given its script without that one line. `None`: pg_restore restores directly.
fn older_server_than_client(admin: &mut Admin, tool: &ClientTool) -> Result<Option<PathBuf>> {
    let ClientTool::Host(pg_restore) = tool else {
        return Ok(None); // the container's own pg_restore: the server's version
    };
    let server: String = admin.client().query_one("SHOW server_version_num", &[])?.get(0);
    let server_major = server.parse::<u32>().unwrap_or(0) / 10000;
    let output = std::process::Command::new(pg_restore).arg("--version").output();
    let version = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let client_major: u32 =
        version.split_whitespace().last().and_then(|v| v.split('.').next()?.parse().ok()).unwrap_or(0);
    let psql = pg_restore.with_file_name("psql");
    Ok((server_major < 17 && client_major >= 17 && psql.exists()).then_some(psql))
}

/// The line of a newer pg_restore's script that servers before 17 refuse.
const TRANSACTION_TIMEOUT: &[u8] = b"SET transaction_timeout = 0;\n";

impl Restore<'_> {
    /// `as_role`: objects are owned by the login, whatever the dump says.
    fn args(&self, staged: &str, as_role: bool) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--use-list".into(), staged.into()];
        if as_role {
            args.push("--no-owner".into());
        }
        args
    }

    fn run(&self, as_role: bool) -> Result<()> {
        let archive = File::open(self.file).with_context(|| format!("read {}", self.file.display()))?;
        let staged = self.tool.stage(self.list)?;
        let mut args: Vec<OsString> =
            ["--exit-on-error", "--single-transaction", "--no-password", "--dbname", self.into]
                .into_iter()
                .map(OsString::from)
                .collect();
        args.extend(self.args(&staged.path, as_role));
        let command = os::signals_unblocked(self.tool.command(self.login, self.into, &args, false));
        let command = os::dies_with_parent(command).stdin_file(archive).stdout_capture();
        run_client(self.tool, command, self.into)
    }

    /// pg_restore writes the script, psql runs it in one transaction, stopping at the first error.
    fn through_psql(&self, psql: &Path, as_role: bool) -> Result<()> {
        use std::io::{BufRead, BufReader, Write};
        let archive = File::open(self.file).with_context(|| format!("read {}", self.file.display()))?;
        let staged = self.tool.stage(self.list)?;
        let mut args = vec![OsString::from("--file=-")];
        args.extend(self.args(&staged.path, as_role));
        let script = os::dies_with_parent(self.tool.command(self.login, self.into, &args, false))
            .stdin_file(archive)
            .stderr_capture()
            .reader()
            .with_context(|| format!("run {}", self.tool.describe()))?;
        let (to_psql, mut feed) = os_pipe::pipe().context("make a pipe to psql")?;
        let feeder = std::thread::spawn(move || -> std::io::Result<()> {
            let mut lines = BufReader::new(script);
            let mut line = Vec::new();
            while lines.read_until(b'\n', &mut line)? > 0 {
                if line != TRANSACTION_TIMEOUT {
                    feed.write_all(&line)?;
                }
                line.clear();
            }
            Ok(())
        });
        let psql_tool = ClientTool::Host(psql.to_path_buf());
        let psql_args: Vec<OsString> =
            ["--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction", "--no-password"]
                .into_iter()
                .map(OsString::from)
                .collect();
        let command = os::signals_unblocked(psql_tool.command(self.login, self.into, &psql_args, false));
        let command = os::dies_with_parent(command).stdin_file(to_psql).stdout_null();
        let ran = run_client(&psql_tool, command, self.into);
        let fed = feeder.join().expect("the script feeder does not panic");
        ran?;
        fed.with_context(|| format!("{} failed on {}", self.tool.describe(), self.file.display()))
    }
}

/// Runs pg_dump or pg_restore on `database`: a failure carries the tool's message and advice; its
/// warnings are shown.
fn run_client(tool: &ClientTool, command: duct::Expression, database: &str) -> Result<()> {
    let output =
        command.stderr_capture().unchecked().run().with_context(|| format!("run {}", tool.describe()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "{} failed ({}) on database {database}:\n{}{}",
            tool.describe(),
            output.status,
            stderr.trim_end(),
            advice(tool, &stderr)
        );
    }
    if !stderr.trim().is_empty() {
        eprintln!("{}", stderr.trim_end());
    }
    Ok(())
}

/// What to do about the usual failures of pg_dump and pg_restore.
fn advice(tool: &ClientTool, stderr: &str) -> String {
    let client = tool.describe();
    if stderr.contains("server version mismatch") {
        format!(
            "\n{client} is older than the server and refuses to dump it: install the PostgreSQL client of \
             the server's major version or newer (Debian/Ubuntu: apt-get install postgresql-client-<major>, \
             from apt.postgresql.org when the distribution lacks it; macOS: brew install postgresql@<major>)"
        )
    } else if stderr.contains("unsupported version") && stderr.contains("file header") {
        format!(
            "\nthe file was written by a newer pg_dump than {client} can read: restore it on a server of \
             that version, or back up again with this project's engine"
        )
    } else if stderr.contains("role \"") && stderr.contains("does not exist") {
        "\nthe dump names roles missing on this server: when they are this project's, run `cargo xtask setup` \
         first (it makes them); a dump of another project's roles restores only in that project"
            .to_owned()
    } else {
        String::new()
    }
}

fn report(task: &str, database: &Database, backup: &Backup) {
    let size = human_size(i64::try_from(backup.size).unwrap_or(i64::MAX));
    eprintln!("{task}: backed up database {} ({size}) to {}", database.name, backup.path.display());
}

fn existing_names(admin: &mut Admin) -> Result<Vec<String>> {
    Ok(admin.databases(&[])?.into_iter().map(|d| d.name).collect())
}

/// `<root>/backups`, with a `.gitignore` that keeps it and everything in it out of git.
fn backups_dir(root: &Path) -> Result<PathBuf> {
    let dir = root.join(DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let ignore = dir.join(".gitignore");
    if std::fs::symlink_metadata(&ignore).is_err() {
        use std::io::Write;
        crate::fsafe::create_new(&ignore, 0o644)?
            .write_all(b"# Database backups written by `cargo xtask backup`: never committed.\n*\n")
            .with_context(|| format!("write {}", ignore.display()))?;
    }
    Ok(dir)
}

/// Gives the finished dump its name, `<stem>.dump`, or `<stem>-2.dump` and so on when a backup of
/// the same second has it: a hard link never replaces an existing file.
fn publish(partial: &Path, dir: &Path, stem: &str) -> Result<PathBuf> {
    for n in 1..1000 {
        let name = if n == 1 { format!("{stem}.dump") } else { format!("{stem}-{n}.dump") };
        let path = dir.join(name);
        match std::fs::hard_link(partial, &path) {
            Ok(()) => return Ok(path),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error).with_context(|| format!("create {}", path.display())),
        }
    }
    bail!("{} holds 999 backups named {stem}-N.dump already", dir.display())
}

/// `<logical>--<branch>--<UTC time>`, the branch made safe for a file name.
fn file_stem(logical: &str, branch: &str, stamp: &str) -> String {
    format!("{logical}--{}--{stamp}", branch_slug(branch))
}

/// The branch with every character outside `[A-Za-z0-9._-]` replaced by `_`; a long one is cut
/// and gets a hash of the whole branch name.
fn branch_slug(branch: &str) -> String {
    let slug: String = branch
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .collect();
    if slug.len() <= MAX_SLUG_BYTES {
        return slug;
    }
    // All ASCII by now, so any byte index is a character boundary.
    format!("{}-{}", &slug[..MAX_SLUG_BYTES - 9], crate::naming::short_hash(branch))
}

/// The current UTC time as `YYYYMMDDTHHMMSSZ`.
fn utc_stamp() -> String {
    stamp_of(super::schema::utc_timestamp_version())
}

fn stamp_of(version: i64) -> String {
    let digits = format!("{version:014}");
    format!("{}T{}Z", &digits[..8], &digits[8..])
}

/// `--db`, else the logical database the file's name starts with (`<logical>--`), else the
/// project's first.
fn restore_target(ctx: &Ctx, file: &Path, db: Option<&str>) -> Result<Database> {
    let named = logical_in_name(file);
    if db.is_some() {
        let database = ctx.database(db)?;
        if let Some(other) = named.filter(|l| *l != database.logical && ctx.select_databases(Some(l)).is_ok())
        {
            eprintln!(
                "restore: warning: {} is named as a backup of `{other}`; restoring it into `{}` as asked",
                file.display(),
                database.logical
            );
        }
        return Ok(database);
    }
    let all = ctx.databases();
    Ok(named.and_then(|l| all.iter().find(|d| d.logical == l)).unwrap_or(&all[0]).clone())
}

fn logical_in_name(file: &Path) -> Option<&str> {
    file.file_name()?.to_str()?.split_once("--").map(|(logical, _)| logical)
}

/// Refuses, before anything changes, a path that is missing, unreadable, or not a pg_dump archive
/// in custom format.
fn check_archive(file: &Path) -> Result<()> {
    let shown = file.display();
    let metadata = std::fs::metadata(file).with_context(|| {
        format!("cannot read {shown}: give the path of a file written by `cargo xtask backup` (in backups/)")
    })?;
    if !metadata.is_file() {
        bail!("{shown} is not a file: give the path of a file written by `cargo xtask backup` (in backups/)");
    }
    let mut head = Vec::with_capacity(MAGIC.len());
    File::open(file)
        .and_then(|f| f.take(MAGIC.len() as u64).read_to_end(&mut head))
        .with_context(|| format!("cannot read {shown}"))?;
    if head != MAGIC {
        bail!(
            "{shown} is not a pg_dump archive in custom format (it does not begin with PGDMP): give a file \
             written by `cargo xtask backup` or `pg_dump --format=custom`"
        );
    }
    Ok(())
}

fn installed_extensions(endpoint: &crate::conn::Endpoint, database: &str) -> Result<Vec<String>> {
    let mut client = endpoint.connect(database)?;
    let rows = client
        .query("SELECT extname::text FROM pg_catalog.pg_extension", &[])
        .map_err(crate::conn::PgError::from)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_database_branch_and_time() {
        assert_eq!(stamp_of(20260301090705), "20260301T090705Z");
        assert_eq!(file_stem("shop", "main", "20260301T090705Z"), "shop--main--20260301T090705Z");
        assert_eq!(branch_slug("feature/Login-Page.v2"), "feature_Login-Page.v2");
        assert_eq!(branch_slug("x'; rm -rf /; \"q\" ü名"), "x___rm_-rf_____q____");
        let long = "very-long/".repeat(30);
        let slug = branch_slug(&long);
        assert_eq!(slug.len(), MAX_SLUG_BYTES);
        assert!(slug.ends_with(&crate::naming::short_hash(&long)), "{slug}");
        assert_ne!(slug, branch_slug(&"very-long/".repeat(31)));
    }

    #[test]
    fn the_logical_database_comes_from_the_file_name() {
        assert_eq!(
            logical_in_name(Path::new("backups/shop--feature_x--20260301T090705Z.dump")),
            Some("shop")
        );
        assert_eq!(logical_in_name(Path::new("/tmp/a--b--c/notes--main--1.dump")), Some("notes"));
        assert_eq!(logical_in_name(Path::new("backups/anything.dump")), None);
    }

    #[test]
    fn publishing_never_overwrites() {
        let dir = os::TempDir::new("backup-test").unwrap();
        let mut published = Vec::new();
        for content in ["one", "two", "three"] {
            let partial = dir.path().join(".partial");
            std::fs::write(&partial, content).unwrap();
            published.push(publish(&partial, dir.path(), "db--main--20260301T090705Z").unwrap());
            std::fs::remove_file(&partial).unwrap();
        }
        let names: Vec<_> = published.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "db--main--20260301T090705Z.dump",
                "db--main--20260301T090705Z-2.dump",
                "db--main--20260301T090705Z-3.dump"
            ]
        );
        let contents: Vec<_> = published.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
        assert_eq!(contents, ["one", "two", "three"]);
    }

    #[test]
    fn archives_are_checked_before_anything_changes() {
        let dir = os::TempDir::new("backup-test").unwrap();
        let missing = dir.path().join("missing.dump");
        assert!(format!("{:#}", check_archive(&missing).unwrap_err()).contains("cannot read"));
        assert!(format!("{:#}", check_archive(dir.path()).unwrap_err()).contains("not a file"));
        for garbage in [&b""[..], b"PGD", b"SELECT 1;\n", b"\x1f\x8b\x08compressed"] {
            let file = dir.path().join("garbage.dump");
            std::fs::write(&file, garbage).unwrap();
            assert!(format!("{:#}", check_archive(&file).unwrap_err()).contains("not a pg_dump archive"));
        }
        let file = dir.path().join("ok.dump");
        std::fs::write(&file, b"PGDMP\x01\x0e\x00").unwrap();
        check_archive(&file).unwrap();
    }
}
