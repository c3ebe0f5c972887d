//! git as the checks use it: the hooks directory, what is staged, and another revision's files.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Runs git in `root` and returns its stdout; an error carrying git's own message otherwise.
fn run(root: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let output = duct::cmd("git", args)
        .dir(root)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("run git: is it installed?")?;
    if !output.status.success() {
        bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(output.stdout)
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).trim_end_matches(['\n', '\r']).to_owned()
}

fn nul_separated(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Where git looks for hooks: `hooks` in the common git directory, which every worktree of the
/// repository shares, or `core.hooksPath` when set (then returned as the second value).
pub fn hooks_dir(root: &Path) -> Result<(PathBuf, Option<String>)> {
    let common = text(run(root, &["rev-parse", "--path-format=absolute", "--git-common-dir"])?);
    // `git config` exits 1 when the key is not set.
    let configured = match duct::cmd!("git", "config", "--path", "core.hooksPath")
        .dir(root)
        .stdout_capture()
        .stderr_null()
        .unchecked()
        .run()
    {
        Ok(output) if output.status.success() => text(output.stdout),
        Ok(_) => String::new(),
        Err(error) => return Err(error).context("run git config"),
    };
    if configured.is_empty() {
        return Ok((PathBuf::from(common).join("hooks"), None));
    }
    let dir = if Path::new(&configured).is_absolute() {
        PathBuf::from(&configured)
    } else {
        // Relative to the top of the worktree git runs the hook in.
        PathBuf::from(text(run(root, &["rev-parse", "--show-toplevel"])?)).join(&configured)
    };
    Ok((dir, Some(configured)))
}

/// Where `root` is inside its worktree: `""` at the top, else `dir/` (git's `--show-prefix`).
pub fn prefix(root: &Path) -> Result<String> {
    Ok(text(run(root, &["rev-parse", "--show-prefix"])?))
}

/// Staged paths under `dir` that differ from HEAD (added, copied, modified, renamed or deleted).
pub fn staged_changes(root: &Path, dir: &str) -> Result<Vec<String>> {
    let out = run(root, &["diff", "--cached", "--name-only", "-z", "--no-renames", "--", dir])?;
    Ok(nul_separated(&out))
}

/// Copies the staged version of every tracked file under `dirs` into `into`, keeping their paths
/// from the top of the worktree (so `root` is `into/<prefix>` in the copy).
pub fn checkout_staged(root: &Path, dirs: &[&str], into: &Path) -> Result<()> {
    let mut args = vec!["ls-files", "-z", "--"];
    args.extend(dirs);
    let listed = run(root, &args)?;
    if listed.is_empty() {
        return Ok(());
    }
    let prefix = format!("--prefix={}/", into.display());
    let output = duct::cmd("git", ["checkout-index", "-z", "--stdin", prefix.as_str()])
        .dir(root)
        .stdin_bytes(listed)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("run git checkout-index")?;
    if !output.status.success() {
        bail!("git checkout-index failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// Staged `.rs` files (added, copied, modified or renamed) and their staged text.
pub fn staged_rust_files(root: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let out = run(
        root,
        &["diff", "--cached", "--name-only", "-z", "--relative", "--diff-filter=ACMR", "--", "*.rs"],
    )?;
    let paths = nul_separated(&out);
    let specs: Vec<String> = paths.iter().map(|p| format!(":./{p}")).collect();
    let blobs = read_blobs(root, &specs)?;
    Ok(paths.into_iter().zip(blobs).filter_map(|(path, blob)| Some((path, blob?))).collect())
}

/// The first of `names` that exists as a branch, preferring the remote-tracking `origin/<name>`
/// (fresher in a CI checkout) over the local one; `None` in a repository that has neither.
pub fn default_branch(root: &Path, names: &[String]) -> Result<Option<String>> {
    let mut refs = Vec::new();
    for name in names {
        refs.push(format!("refs/remotes/origin/{name}"));
        refs.push(format!("refs/heads/{name}"));
    }
    let mut args = vec!["for-each-ref", "--format=%(refname)"];
    args.extend(refs.iter().map(String::as_str));
    let found = text(run(root, &args)?);
    let existing: Vec<&str> = found.lines().collect();
    Ok(refs.into_iter().find(|r| existing.contains(&r.as_str())))
}

/// The newest common ancestor of HEAD and `rev`, or `None` (no HEAD yet, or unrelated histories).
pub fn merge_base_with_head(root: &Path, rev: &str) -> Option<String> {
    run(root, &["merge-base", "HEAD", rev]).ok().map(text).filter(|s| !s.is_empty())
}

/// Whether HEAD holds `path` (relative to `root`); `None` without a repository or a first commit.
pub fn in_head(root: &Path, path: &Path) -> Option<bool> {
    run(root, &["rev-parse", "--verify", "--quiet", "HEAD"]).ok()?;
    Some(run(root, &["cat-file", "-e", &format!("HEAD:./{}", path.display())]).is_ok())
}

/// Whether commit `ancestor` is `descendant` or one of its ancestors; `false` when git cannot say
/// (an unknown commit, no repository).
pub fn is_ancestor(root: &Path, ancestor: &str, descendant: &str) -> bool {
    run(root, &["merge-base", "--is-ancestor", ancestor, descendant]).is_ok()
}

/// The files under `dir` at revision `rev` (paths relative to `root`, as `dir` is).
pub fn files_at(root: &Path, rev: &str, dir: &str) -> Result<Vec<String>> {
    let out = run(root, &["ls-tree", "-r", "-z", "--name-only", rev, "--", dir])?;
    Ok(nul_separated(&out))
}

/// The paths under `dir` whose working-tree file differs from revision `rev` (untracked files are
/// not listed), relative to `root` as `dir` is.
pub fn changed_since(root: &Path, rev: &str, dir: &str) -> Result<Vec<String>> {
    let out = run(root, &["diff", "--name-only", "-z", "--relative", "--no-renames", rev, "--", dir])?;
    Ok(nul_separated(&out))
}

/// The contents of each object named like `REV:./path` (or `:./path` for the staged one), as
/// stored (no line-ending conversion); `None` for one that does not exist. One git process for all.
pub fn read_blobs(root: &Path, specs: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let input: String = specs.iter().map(|s| format!("{s}\n")).collect();
    let reader = duct::cmd("git", ["cat-file", "--batch"])
        .dir(root)
        .stdin_bytes(input)
        .stderr_capture()
        .reader()
        .context("run git cat-file")?;
    let mut reader = BufReader::new(reader);
    let mut blobs = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut header = String::new();
        reader.read_line(&mut header).with_context(|| format!("read {spec} from git"))?;
        let fields: Vec<&str> = header.split_whitespace().collect();
        match fields.as_slice() {
            [_, "missing"] | [_, "ambiguous"] => blobs.push(None),
            [_, _, size] => {
                let size: usize = size.parse().with_context(|| format!("git cat-file header {header:?}"))?;
                let mut content = vec![0; size + 1];
                reader.read_exact(&mut content).with_context(|| format!("read {spec} from git"))?;
                content.pop();
                blobs.push(Some(content));
            }
            _ => bail!("unexpected answer from git cat-file for {spec}: {header:?}"),
        }
    }
    Ok(blobs)
}

/// The branch refs of a repository, as `branches` and `prune` read them: every local and
/// remote-tracking ref, the configured remotes, and what each worktree has checked out.
#[derive(Debug, Default)]
pub struct BranchRefs {
    /// Full names under `refs/heads/` and `refs/remotes/`.
    pub refs: Vec<String>,
    /// `git remote`: names may contain `/`, so a remote-tracking ref is split with them.
    pub remotes: Vec<String>,
    pub worktrees: Vec<WorktreeHead>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorktreeHead {
    /// The branch checked out (without `refs/heads/`; it may be unborn), `None` when detached.
    pub branch: Option<String>,
    /// The full commit checked out, when there is one.
    pub commit: Option<String>,
}

/// The repository's branch refs, or `None` when `root` is not inside a git repository.
pub fn branch_refs(root: &Path) -> Result<Option<BranchRefs>> {
    let probe = duct::cmd!("git", "rev-parse", "--git-dir")
        .dir(root)
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()
        .context("run git: is it installed?")?;
    if !probe.status.success() {
        return Ok(None);
    }
    let refs = text(run(root, &["for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes"])?);
    let remotes = text(run(root, &["remote"])?);
    let worktrees = text(run(root, &["worktree", "list", "--porcelain"])?);
    Ok(Some(BranchRefs {
        refs: refs.lines().map(str::to_owned).collect(),
        remotes: remotes.lines().map(str::to_owned).collect(),
        worktrees: parse_worktrees(&worktrees),
    }))
}

/// `git worktree list --porcelain`: one record per worktree, starting with its `worktree <path>`
/// line (without `-z`, which git learnt only in 2.36; no other field can hold a newline). A bare
/// repository has no HEAD of its own and is left out.
fn parse_worktrees(porcelain: &str) -> Vec<WorktreeHead> {
    let mut heads = Vec::new();
    let mut current: Option<(WorktreeHead, bool)> = None;
    for line in porcelain.lines() {
        if line.starts_with("worktree ") {
            heads.extend(current.take().filter(|(_, bare)| !bare).map(|(head, _)| head));
            current = Some((WorktreeHead::default(), false));
        } else if let Some((head, bare)) = current.as_mut() {
            if let Some(commit) = line.strip_prefix("HEAD ") {
                // An unborn branch shows a HEAD of zeros.
                head.commit = Some(commit.to_owned()).filter(|c| c.bytes().any(|b| b != b'0'));
            } else if let Some(branch) = line.strip_prefix("branch ") {
                head.branch = Some(branch.strip_prefix("refs/heads/").unwrap_or(branch).to_owned());
            } else if line == "bare" {
                *bare = true;
            }
        }
    }
    heads.extend(current.filter(|(_, bare)| !bare).map(|(head, _)| head));
    heads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worktrees_from_porcelain() {
        let porcelain = "worktree /r\nHEAD 0123abcd\nbranch refs/heads/main\n\n\
                         worktree /r-detached\nHEAD 4567cdef\ndetached\n\n\
                         worktree /r-new\nHEAD 0000000000\nbranch refs/heads/feat/new\nprunable gitdir file points to non-existent location\n\n\
                         worktree /bare\nbare\n";
        let head = |branch: Option<&str>, commit: Option<&str>| WorktreeHead {
            branch: branch.map(Into::into),
            commit: commit.map(Into::into),
        };
        assert_eq!(
            parse_worktrees(porcelain),
            [
                head(Some("main"), Some("0123abcd")),
                head(None, Some("4567cdef")),
                head(Some("feat/new"), None)
            ]
        );
    }
}
