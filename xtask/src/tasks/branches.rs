//! `branches` and `prune`: every database of this project on the server with the branch it was made
//! for and whether that branch still exists in git; dropping those whose branch is gone.
//!
//! A branch exists when it is a local branch, a remote-tracking branch of any remote, checked out in
//! a worktree (a detached worktree by its commit, as a detached HEAD names its databases), or the
//! branch this run acts for (`--branch`, `XTASK_BRANCH`). Default branches are never pruned.

use std::collections::HashMap;

use anyhow::{Result, bail};
use serde::Serialize;

use super::schema::civil_from_days;
use super::{connect_running, human_size, refuse_remote_without_force};
use crate::admin::{Admin, LabelledDatabase};
use crate::engine;
use crate::git::{self, BranchRefs};
use crate::workspace::Ctx;

/// One database of the project, as `branches --json` prints it.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    /// The logical database (the service's), from the label.
    database: String,
    branch: String,
    /// The hash a pristine template was built from; `None` for a branch database.
    template: Option<String>,
    /// The branch this run acts for.
    current: bool,
    /// One of the configured default branches: never pruned.
    default: bool,
    /// `None` outside a git repository.
    branch_exists: Option<bool>,
    /// Where git has the branch: `local`, `remote:<remote>`, `worktree`.
    found_in: Vec<String>,
    size_bytes: Option<i64>,
    /// From the label: when the database was created (UTC).
    created: String,
    /// The newest modification time of the database's files on the server (UTC): writes reach the
    /// files at the next checkpoint, reads leave no trace. `None` unless the admin user may read
    /// the server's files (a superuser).
    last_write: Option<String>,
    /// Client sessions connected to it now.
    connections: i64,
    /// A test's own copy (`services/testdb`), left by a failing test.
    test: bool,
    /// On a server developers share, whose it is (git's user.email); `None`: everyone's.
    developer: Option<String>,
    /// Its branch is gone from git and is not a default branch, or it is a test's copy: `prune`
    /// drops it (unless in use).
    prunable: bool,
    #[serde(skip)]
    created_epoch: Option<i64>,
    #[serde(skip)]
    last_write_epoch: Option<i64>,
}

#[derive(Serialize)]
struct Report {
    project: String,
    engine: &'static str,
    current_branch: String,
    default_branches: Vec<String>,
    /// Whether the workspace is inside a git repository (else `branch_exists` is `null`).
    git: bool,
    databases: Vec<Row>,
    /// Each branch's Redis users, keys and memory; `None` when the project uses no Redis.
    redis: Option<Vec<crate::redis::BranchUsage>>,
    #[serde(skip)]
    now: i64,
}

/// The branches git knows, for telling whether the branch of a label still exists.
struct GitBranches {
    /// Branch name to where git has it: `local`, `remote:<remote>`, `worktree`.
    places: HashMap<String, Vec<String>>,
    /// The commits checked out in detached worktrees.
    detached: Vec<String>,
}

impl GitBranches {
    fn new(refs: BranchRefs) -> GitBranches {
        let mut places: HashMap<String, Vec<String>> = HashMap::new();
        let mut add = |branch: &str, place: String| {
            let found = places.entry(branch.to_owned()).or_default();
            if !found.contains(&place) {
                found.push(place);
            }
        };
        for r in &refs.refs {
            if let Some(branch) = r.strip_prefix("refs/heads/") {
                add(branch, "local".to_owned());
            }
            let Some(rest) = r.strip_prefix("refs/remotes/") else { continue };
            // Remote names may contain `/`: an ambiguous ref counts for every reading of it.
            let mut known = false;
            for remote in &refs.remotes {
                if let Some(branch) = rest.strip_prefix(remote.as_str()).and_then(|n| n.strip_prefix('/')) {
                    add(branch, format!("remote:{remote}"));
                    known = true;
                }
            }
            // Left behind by a remote no longer configured: read with its first part as the remote.
            if !known && let Some((remote, branch)) = rest.split_once('/') {
                add(branch, format!("remote:{remote}"));
            }
        }
        let mut detached = Vec::new();
        for worktree in refs.worktrees {
            match (worktree.branch, worktree.commit) {
                (Some(branch), _) => add(&branch, "worktree".to_owned()),
                (None, Some(commit)) => detached.push(commit),
                (None, None) => {}
            }
        }
        GitBranches { places, detached }
    }

    /// Where the branch is found; empty when it is gone.
    fn found_in(&self, branch: &str) -> Vec<String> {
        let mut found = self.places.get(branch).cloned().unwrap_or_default();
        let worktree = "worktree".to_owned();
        if !found.contains(&worktree) && self.detached.iter().any(|commit| names_commit(branch, commit)) {
            found.push(worktree);
        }
        found
    }
}

/// A detached HEAD's databases are named by its short commit (`git rev-parse --short`), whose length
/// grows with the repository: any abbreviation of at least 4 hex digits counts.
fn names_commit(branch: &str, commit: &str) -> bool {
    branch.len() >= 4
        && branch.len() <= commit.len()
        && branch.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && commit.starts_with(branch)
}

/// A branch prune takes away: not the current one, not a default branch, and found nowhere in git.
fn is_gone(ctx: &Ctx, git: &GitBranches, branch: &str, current: bool) -> bool {
    !current && !ctx.config.default_branches.iter().any(|b| b == branch) && git.found_in(branch).is_empty()
}

fn row(ctx: &Ctx, git: Option<&GitBranches>, db: LabelledDatabase, all_developers: bool) -> Row {
    let label = db.label;
    // Only the caller's own are judged by the caller's git (another developer's branches are
    // in their clone); `--all-developers` judges them all by it.
    let mine = all_developers || label.developer.as_deref() == ctx.developer.as_ref().map(|d| d.id.as_str());
    let current = label.branch == ctx.branch.name && (mine || label.developer.is_none());
    let default = ctx.config.default_branches.contains(&label.branch);
    let found_in = git.map(|g| g.found_in(&label.branch)).unwrap_or_default();
    let branch_exists = git.map(|_| current || !found_in.is_empty());
    Row {
        prunable: mine && (git.is_some_and(|g| is_gone(ctx, g, &label.branch, current)) || label.test),
        developer: label.developer,
        test: label.test,
        created_epoch: parse_utc(&label.created),
        last_write_epoch: db.files_changed,
        last_write: db.files_changed.map(format_utc),
        name: db.name,
        database: label.database,
        branch: label.branch,
        template: label.template,
        current,
        default,
        branch_exists,
        found_in,
        size_bytes: db.size_bytes,
        created: label.created,
        connections: db.connections,
    }
}

/// The project's databases on the running server, sorted for reading: branch databases before
/// templates, default branches first, then the current one, then by branch and database.
/// With developers (the external engine), the caller's own and everyone's; `all_developers`:
/// every developer's, each judged as the caller's.
fn survey(
    ctx: &Ctx,
    admin: &mut Admin,
    git: Option<&GitBranches>,
    engine: &dyn engine::Engine,
    all_developers: bool,
) -> Result<Report> {
    let (databases, now) = admin.labelled_databases(&ctx.config.project)?;
    let me = ctx.developer.as_ref().map(|d| d.id.as_str());
    let mut rows: Vec<Row> = databases
        .into_iter()
        .filter(|db| all_developers || db.label.developer.is_none() || db.label.developer.as_deref() == me)
        .map(|db| row(ctx, git, db, all_developers))
        .collect();
    rows.sort_by(|a, b| {
        let key = |r: &Row| (r.template.is_some(), !r.default, !r.current);
        key(a)
            .cmp(&key(b))
            .then_with(|| (&a.branch, &a.database, &a.name).cmp(&(&b.branch, &b.database, &b.name)))
    });
    Ok(Report {
        project: ctx.config.project.clone(),
        engine: engine.kind().name(),
        current_branch: ctx.branch.name.clone(),
        default_branches: ctx.config.default_branches.clone(),
        git: git.is_some(),
        databases: rows,
        redis: None,
        now,
    })
}

fn git_branches(ctx: &Ctx) -> Result<Option<GitBranches>> {
    Ok(git::branch_refs(&ctx.root)?.map(GitBranches::new))
}

pub fn branches(ctx: &Ctx, json: bool, all_developers: bool) -> Result<()> {
    let git = git_branches(ctx)?;
    let engine = engine::select(ctx)?;
    let mut admin = connect_running(engine.as_ref(), "branches")?;
    let mut report = survey(ctx, &mut admin, git.as_ref(), engine.as_ref(), all_developers)?;
    if let Some(redis) = crate::redis::of(ctx, engine.kind())? {
        match redis.branches() {
            Ok(usage) => report.redis = Some(usage),
            Err(error) => eprintln!("note: Redis not shown: {error:#}"),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(report: &Report) {
    if let Some(redis) = &report.redis {
        print_redis(redis, report);
    }
    if report.databases.is_empty() {
        println!("no databases of project `{}` on the server", report.project);
        return;
    }
    let header = ["BRANCH", "GIT", "DATABASE", "NAME", "SIZE", "CREATED", "LAST WRITE", ""];
    let cells = |r: &Row| -> [String; 8] {
        let git = match r.branch_exists {
            _ if !r.found_in.is_empty() => r.found_in.join(","),
            None => "?".into(),
            Some(true) => "not in git".into(),
            Some(false) => "gone".into(),
        };
        let mut notes = Vec::new();
        if r.test {
            notes.push("a failed test's copy".to_owned());
        }
        if r.current {
            notes.push("current".to_owned());
        }
        if r.default {
            notes.push("default branch".to_owned());
        }
        if r.connections > 0 {
            notes.push(format!("{} connected", r.connections));
        }
        if r.prunable {
            notes.push(
                if r.connections > 0 { "prune keeps it while in use" } else { "prune drops it" }.into(),
            );
        }
        [
            r.branch.clone(),
            git,
            r.database.clone(),
            r.name.clone(),
            r.size_bytes.map_or_else(|| "?".into(), human_size),
            r.created_epoch.map_or_else(|| r.created.clone(), |t| age(report.now - t)),
            r.last_write_epoch.map_or_else(|| "-".into(), |t| age(report.now - t)),
            notes.join(", "),
        ]
    };
    let (databases, templates): (Vec<&Row>, Vec<&Row>) =
        report.databases.iter().partition(|r| r.template.is_none());
    let mut table: Vec<[String; 8]> = vec![header.map(String::from)];
    table.extend(databases.iter().map(|r| cells(r)));
    let first_template = table.len();
    table.extend(templates.iter().map(|r| cells(r)));
    let widths: Vec<usize> =
        (0..8).map(|i| table.iter().map(|row| row[i].chars().count()).max().unwrap_or(0)).collect();
    for (n, row) in table.iter().enumerate() {
        if n == first_template {
            println!("\ntemplates (pristine copies that branch databases are cloned from)");
        }
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
    let total: i64 = report.databases.iter().filter_map(|r| r.size_bytes).sum();
    let branches: std::collections::BTreeSet<&str> =
        report.databases.iter().map(|r| r.branch.as_str()).collect();
    println!(
        "\n{} database(s) of project `{}` ({} engine) for {} branch(es), {} in all",
        report.databases.len(),
        report.project,
        report.engine,
        branches.len(),
        human_size(total)
    );
    let prunable = report.databases.iter().filter(|r| r.prunable).count();
    if !report.git {
        println!("not inside a git repository: whether their branches still exist is unknown");
    } else if prunable > 0 {
        println!("{prunable} of them belong to branches gone from git: `cargo xtask prune` drops them");
    }
}

fn print_redis(usage: &[crate::redis::BranchUsage], report: &Report) {
    println!("redis (keys and memory of each branch's users)");
    if usage.is_empty() {
        println!("  no Redis users of project `{}`", report.project);
    }
    for branch in usage {
        let current = if branch.branch == report.current_branch { "  current" } else { "" };
        println!(
            "  {:<30} {:>7} key(s) {:>10}  {}{current}",
            branch.branch,
            branch.keys,
            human_size(branch.memory_bytes as i64),
            branch.users.join(", ")
        );
    }
    println!();
}

/// Seconds as the table shows an age.
fn age(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86_400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

pub fn prune(ctx: &Ctx, dry_run: bool, force: bool, all_developers: bool) -> Result<()> {
    let Some(git) = git_branches(ctx)? else {
        bail!(
            "prune needs git to tell which branches are gone, but {} is not inside a git repository; \
             drop a branch's databases with `cargo xtask wipe --branch NAME`",
            ctx.root.display()
        );
    };
    let engine = engine::select(ctx)?;
    if !dry_run {
        refuse_remote_without_force(engine.as_ref(), force, "prune")?;
    }
    let mut admin = connect_running(engine.as_ref(), "prune")?;
    if let Some(redis) = crate::redis::of(ctx, engine.kind())? {
        let gone = |branch: &str| is_gone(ctx, &git, branch, branch == ctx.branch.name);
        if let Some(said) = redis.prune(&gone, dry_run, all_developers)? {
            eprintln!("prune: {said}");
        }
    }
    let report = survey(ctx, &mut admin, Some(&git), engine.as_ref(), all_developers)?;
    let (in_use, doomed): (Vec<&Row>, Vec<&Row>) =
        report.databases.iter().filter(|r| r.prunable).partition(|r| r.connections > 0);
    if doomed.is_empty() && in_use.is_empty() {
        eprintln!(
            "prune: nothing to prune: the {} database(s) of project `{}` belong to branches that exist \
             or to a default branch",
            report.databases.len(),
            report.project
        );
        return Ok(());
    }
    let size = |r: &Row| r.size_bytes.map_or_else(|| "?".into(), human_size);
    let name_width = doomed.iter().chain(&in_use).map(|r| r.name.len()).max().unwrap_or(0);
    let branch_width = doomed.iter().chain(&in_use).map(|r| r.branch.chars().count()).max().unwrap_or(0);
    let line = |r: &Row| {
        let template = if r.template.is_some() { "  (template)" } else { "" };
        format!("  {:<name_width$}  {:<branch_width$}  {:>9}{template}", r.name, r.branch, size(r))
    };
    if !doomed.is_empty() {
        let verb = if dry_run { "would drop" } else { "dropping" };
        eprintln!(
            "prune: {verb} {} database(s) of branches gone from git (no local branch, no remote-tracking \
             branch, no worktree):",
            doomed.len()
        );
        for r in &doomed {
            eprintln!("{}", line(r));
        }
    }
    if !in_use.is_empty() {
        eprintln!(
            "prune: keeps {} database(s) of gone branches that clients are connected to now:",
            in_use.len()
        );
        for r in &in_use {
            eprintln!("{}  {} connected", line(r), r.connections);
        }
        eprintln!("prune: close those connections and prune again, or `cargo xtask wipe --branch NAME`");
    }
    if dry_run {
        eprintln!("prune: --dry-run: nothing dropped");
        return Ok(());
    }
    let mut freed = 0;
    for r in &doomed {
        let expected = Some((r.database.as_str(), r.branch.as_str()));
        if admin.drop_labelled(&r.name, &ctx.config.project, expected)? {
            eprintln!("prune: dropped database {}", r.name);
            freed += r.size_bytes.unwrap_or(0);
        } else {
            eprintln!("prune: database {} was already gone", r.name);
        }
    }
    if !doomed.is_empty() {
        eprintln!("prune: dropped {} database(s), {} freed", doomed.len(), human_size(freed));
    }
    Ok(())
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`, the label's `created`.
fn parse_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shape = b.len() == 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':';
    if !shape || b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let n = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hour, minute, second) = (n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch, as the label writes times.
fn format_utc(epoch: i64) -> String {
    let (days, seconds) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm; the inverse
/// of `civil_from_days`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::WorktreeHead;

    fn git(refs: &[&str], remotes: &[&str], worktrees: &[(Option<&str>, Option<&str>)]) -> GitBranches {
        GitBranches::new(BranchRefs {
            refs: refs.iter().map(|s| s.to_string()).collect(),
            remotes: remotes.iter().map(|s| s.to_string()).collect(),
            worktrees: worktrees
                .iter()
                .map(|(b, c)| WorktreeHead { branch: b.map(Into::into), commit: c.map(Into::into) })
                .collect(),
        })
    }

    #[test]
    fn branches_are_found_locally_on_remotes_and_in_worktrees() {
        let g = git(
            &[
                "refs/heads/main",
                "refs/heads/feat/x",
                "refs/remotes/origin/HEAD",
                "refs/remotes/origin/feat/x",
                "refs/remotes/origin/only-remote",
                "refs/remotes/team/alice/wip",
                "refs/remotes/old/stale",
            ],
            &["origin", "team/alice", "team"],
            &[(Some("unborn"), None), (None, Some("0123456789abcdef0123456789abcdef01234567"))],
        );
        assert_eq!(g.found_in("main"), ["local"]);
        assert_eq!(g.found_in("feat/x"), ["local", "remote:origin"]);
        assert_eq!(g.found_in("only-remote"), ["remote:origin"]);
        // `team/alice/wip` reads as `wip` of `team/alice` and as `alice/wip` of `team`.
        assert_eq!(g.found_in("wip"), ["remote:team/alice"]);
        assert_eq!(g.found_in("alice/wip"), ["remote:team"]);
        assert_eq!(g.found_in("stale"), ["remote:old"]);
        assert_eq!(g.found_in("unborn"), ["worktree"]);
        assert_eq!(g.found_in("0123456"), ["worktree"]);
        assert!(g.found_in("0123457").is_empty());
        assert!(g.found_in("012").is_empty(), "too short to be a commit name");
        assert!(g.found_in("gone").is_empty());
        assert!(g.found_in("x").is_empty());
        assert!(g.found_in("origin/feat/x").is_empty());
    }

    #[test]
    fn label_times_round_trip() {
        for (text, epoch) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:34:56Z", 951_827_696),
            ("2025-12-31T23:59:59Z", 1_767_225_599),
        ] {
            assert_eq!(parse_utc(text), Some(epoch), "{text}");
            assert_eq!(format_utc(epoch), text);
        }
        for bad in ["", "2025-01-01 00:00:00Z", "2025-13-01T00:00:00Z", "2025-01-01T00:00:00"] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
        assert_eq!(age(30), "just now");
        assert_eq!(age(7200), "2 h ago");
        assert_eq!(age(3 * 86_400 + 5), "3 days ago");
    }
}
