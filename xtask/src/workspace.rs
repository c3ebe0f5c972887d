//! The workspace we act on: its root, its configuration, the current branch and its databases.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::config::{Config, EngineKind};
use crate::developer::Developer;
use crate::naming::DbName;
use crate::services::DatabaseSpec;

/// Everything a task needs, computed once.
pub struct Ctx {
    pub root: PathBuf,
    pub config: Config,
    pub branch: Branch,
    /// Install a missing PostgreSQL where this tool may (`--provision`).
    pub provision: bool,
    /// On the external engine, whose databases these are (see [`Ctx::developer_of_branch`]).
    pub developer: Option<Developer>,
}

#[derive(Debug, Clone)]
pub struct Branch {
    pub name: String,
    pub is_default: bool,
    /// Where the name came from, for `db-status`: flag, env, git, ci or commit.
    pub source: &'static str,
}

/// A logical database of the project and its name on this branch.
#[derive(Debug, Clone)]
pub struct Database {
    pub logical: String,
    pub name: DbName,
    pub spec: DatabaseSpec,
}

impl Ctx {
    pub fn new(branch_flag: Option<String>, provision: bool) -> Result<Ctx> {
        let root = find_root()?;
        let sh = Shell::new()?;
        sh.change_dir(&root);
        let config = Config::load(&root)?;
        let branch = current_branch(&sh, &root, branch_flag, &config.default_branches)?;
        let developer = match config.engine {
            EngineKind::External if config.per_developer => {
                Developer::resolve(&root, &|key| std::env::var(key).ok())?
            }
            _ => None,
        };
        Ok(Ctx { root, config, branch, provision, developer })
    }

    /// The same project and branch, its files read from another copy (the staged ones, for the hook).
    pub fn with_root(&self, root: PathBuf) -> Ctx {
        Ctx {
            root,
            config: self.config.clone(),
            branch: self.branch.clone(),
            provision: self.provision,
            developer: self.developer.clone(),
        }
    }

    /// The same project acting for another branch.
    pub fn with_branch(&self, branch: Branch) -> Ctx {
        Ctx { branch, ..self.with_root(self.root.clone()) }
    }

    /// The developer this branch's databases are named for: on the external engine, unless the
    /// branch is one of `shared-branches`.
    pub fn developer_of_branch(&self) -> Option<&Developer> {
        self.developer.as_ref().filter(|_| !self.config.shared_branches.contains(&self.branch.name))
    }

    /// The project's logical databases on this branch, the default one first. Per developer, the
    /// name is that of branch `<developer part>/<branch>`, so it always carries a hash.
    pub fn databases(&self) -> Vec<Database> {
        let (key, is_default) = self.naming_key();
        self.config
            .databases
            .iter()
            .map(|spec| Database {
                logical: spec.logical.clone(),
                name: DbName::for_branch(&spec.base, &key, is_default),
                spec: spec.clone(),
            })
            .collect()
    }

    /// What this branch's names are made of: the branch (per developer, `<developer part>/<branch>`)
    /// and whether it takes the bare base names of a default branch.
    pub fn naming_key(&self) -> (String, bool) {
        match self.developer_of_branch() {
            Some(developer) => (format!("{}/{}", developer.part, self.branch.name), false),
            None => (self.branch.name.clone(), self.branch.is_default),
        }
    }

    /// The databases selected by `--db`, or all of them.
    pub fn select_databases(&self, db: Option<&str>) -> Result<Vec<Database>> {
        let all = self.databases();
        let Some(wanted) = db else { return Ok(all) };
        match all.iter().find(|d| d.logical == wanted) {
            Some(found) => Ok(vec![found.clone()]),
            None => {
                let known: Vec<&str> = all.iter().map(|d| d.logical.as_str()).collect();
                bail!("no database named `{wanted}` in this project; known: {}", known.join(", "))
            }
        }
    }

    /// The database addressed by `--db`, or the first one.
    pub fn database(&self, db: Option<&str>) -> Result<Database> {
        Ok(self.select_databases(db)?.remove(0))
    }
}

impl Database {
    /// `migrations/<db>/`, or `migrations/` itself for a single-database project keeping its files
    /// there (repository-relative).
    pub fn migrations_dir(&self, ctx: &Ctx) -> PathBuf {
        own_or_shared_dir(ctx, "migrations", &self.logical)
    }

    pub fn seeds_dir(&self, ctx: &Ctx) -> PathBuf {
        own_or_shared_dir(ctx, "seeds", &self.logical)
    }
}

fn own_or_shared_dir(ctx: &Ctx, top: &str, logical: &str) -> PathBuf {
    let own = Path::new(top).join(logical);
    let single_database = ctx.databases().len() == 1;
    if !ctx.root.join(&own).is_dir() && single_database && has_sql_files(&ctx.root.join(top)) {
        return PathBuf::from(top);
    }
    own
}

fn has_sql_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .is_ok_and(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".sql")))
}

/// The nearest directory upwards holding a Cargo.toml with a `[workspace]` table, so every task
/// works from any sub-directory.
fn find_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("read the current directory")?;
    for dir in cwd.ancestors() {
        if is_workspace_root(dir) {
            return Ok(dir.to_path_buf());
        }
    }
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf);
    match built_in.filter(|dir| is_workspace_root(dir)) {
        Some(dir) => Ok(dir),
        None => {
            bail!("no Cargo workspace found above {}: run cargo xtask inside the repository", cwd.display())
        }
    }
}

fn is_workspace_root(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|text| text.lines().any(|line| line.trim_start().starts_with("[workspace")))
}

/// The branch named by `.git/HEAD` (or a worktree's HEAD), read without starting git: a process
/// costs more than the rest of a no-op run. Anything unusual is left to git itself.
fn branch_from_head_file(root: &Path) -> Option<String> {
    let dot_git = root.join(".git");
    let git_dir = if dot_git.is_dir() {
        dot_git
    } else {
        let pointer = std::fs::read_to_string(&dot_git).ok()?;
        let target = PathBuf::from(pointer.strip_prefix("gitdir:")?.trim());
        if target.is_absolute() { target } else { root.join(target) }
    };
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let name = head.strip_prefix("ref: refs/heads/")?.trim_end_matches(['\n', '\r']);
    (!name.is_empty()).then(|| name.to_owned())
}

/// `--branch`, else `XTASK_BRANCH`, else git's current branch; on a detached HEAD the CI's branch
/// variables, else the short commit. Outside git, the default branch.
fn current_branch(
    sh: &Shell,
    root: &Path,
    flag: Option<String>,
    default_branches: &[String],
) -> Result<Branch> {
    let (name, source) = if let Some(name) = flag {
        (name, "flag")
    } else if let Some(name) = branch_from_env()? {
        (name, "env")
    } else {
        branch_from_git(sh, root).unwrap_or_else(|| (default_branches[0].clone(), "default"))
    };
    if name.trim().is_empty() {
        bail!("the branch name is empty: pass --branch NAME or set XTASK_BRANCH");
    }
    let is_default = default_branches.contains(&name);
    Ok(Branch { name, is_default, source })
}

/// `XTASK_BRANCH` when set and not empty. A value that is not UTF-8 is an error, not a reason to
/// fall back to git's branch: `wipe` would then drop another branch's databases.
fn branch_from_env() -> Result<Option<String>> {
    match std::env::var("XTASK_BRANCH") {
        Ok(name) => Ok(Some(name).filter(|b| !b.is_empty())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(raw)) => {
            bail!("XTASK_BRANCH={raw:?} is not UTF-8 text: git branch names are; set it to the branch's name")
        }
    }
}

fn branch_from_git(sh: &Shell, root: &Path) -> Option<(String, &'static str)> {
    if let Some(name) = branch_from_head_file(root) {
        return Some((name, "git"));
    }
    // symbolic-ref also names an unborn branch (a repository with no commit yet).
    if let Ok(name) = cmd!(sh, "git symbolic-ref --quiet --short HEAD").quiet().ignore_stderr().read() {
        return Some((name, "git"));
    }
    for var in ["GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"] {
        if let Some(name) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            return Some((name, "ci"));
        }
    }
    let commit = cmd!(sh, "git rev-parse --short HEAD").quiet().ignore_stderr().read().ok()?;
    Some((commit, "commit"))
}
