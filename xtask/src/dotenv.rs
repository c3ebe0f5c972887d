//! `.env` rewritten in place: our keys' values updated or appended, every other byte kept, the file
//! made its owner's only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

mod grammar;

/// What `update` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The content changed.
    pub written: bool,
    /// The file (a symlink's target) was readable by group or others, with this mode, and is now
    /// its owner's only.
    pub tightened_from: Option<u32>,
}

/// Sets `vars` in the file. The file holds passwords, so it is made readable by its owner only:
/// a new one is 0600, an existing one (a symlink's target, through any number of links) loses
/// its group and other bits, which the outcome reports. Refused, with nothing written: a
/// directory, anything but a regular file at the end of the links (a FIFO would block the read,
/// and renaming a file over a device such as /dev/null would replace it), a dangling symlink (the
/// file would be made wherever it points), a read-only file that would change (someone made it
/// so on purpose), and a file dotenvy cannot read to its end (an unclosed quote).
pub fn update(path: &Path, vars: &[(&str, String)]) -> Result<Outcome> {
    let target = resolve_symlink(path)?;
    let meta = match std::fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => bail!(
            "{} is a directory, not a .env file: move it away so setup can write the file",
            path.display()
        ),
        Ok(meta) if !meta.is_file() => bail!(
            "{} is not a regular file ({}): setup writes the connection URLs only into a regular file; \
             remove it, or point `env-file` (XTASK_ENV_FILE) elsewhere",
            path.display(),
            target.display()
        ),
        Ok(meta) => Some(meta),
        Err(_) => None,
    };
    let old = match std::fs::read(&target) {
        Ok(bytes) => String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8 text; fix or remove it", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let new = rewrite(&old, vars).with_context(|| format!("{} is left as it is", path.display()))?;
    let mode = meta.as_ref().map(|m| m.permissions().mode() & 0o7777);
    let outcome = Outcome { written: new != old, tightened_from: mode.filter(|mode| mode & 0o077 != 0) };
    if outcome.written && meta.as_ref().is_some_and(|meta| meta.permissions().readonly()) {
        bail!(
            "{} is read-only, so setup leaves it as it is: make it writable (chmod u+w {}) or point \
             `env-file` (XTASK_ENV_FILE) elsewhere",
            path.display(),
            target.display()
        );
    }
    // Tightened before the new content goes in, which then keeps the mode.
    if let Some(loose) = outcome.tightened_from {
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(loose & 0o700)).with_context(
            || format!("make {} readable by its owner only (chmod go= {})", path.display(), target.display()),
        )?;
    }
    if outcome.written {
        write_atomically(&target, new.as_bytes(), 0o600)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(outcome)
}

/// The file a symlink finally points to; the path itself when it is no symlink.
fn resolve_symlink(path: &Path) -> Result<std::path::PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => match std::fs::canonicalize(path) {
            Ok(target) => Ok(target),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} is a symlink to {}, which does not exist: create that file, or remove the link so \
                 setup writes a file of its own",
                path.display(),
                std::fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string())
            ),
            Err(e) => Err(e).with_context(|| format!("follow the symlink {}", path.display())),
        },
        _ => Ok(path.to_path_buf()),
    }
}

/// Pure: sets our keys' values where dotenvy finds them assigned at the top level (`KEY=`,
/// `export KEY=` with any whitespace, a BOM before the first), keeping every other byte, inline
/// comments included; appends the missing ones with the line ending of the file's last line.
/// Refuses a file with a quote it never closes: where its values end cannot be told, and dotenvy
/// rejects it.
/// The value of `key` in a dotenv text, its quotes removed (the way setup writes them).
pub fn value(text: &str, key: &str) -> Option<String> {
    let raw = text.lines().find_map(|line| line.trim_start().strip_prefix(key)?.strip_prefix('='))?;
    let raw = raw.trim();
    Some(raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')).unwrap_or(raw).to_owned())
}

pub fn rewrite(old: &str, vars: &[(&str, String)]) -> Result<String> {
    let assignments = grammar::assignments(old).map_err(|unterminated| {
        anyhow!(
            "line {} opens a quote that the file never closes, so dotenv readers reject it and setup \
             cannot tell where its values end: close the quote (or remove the line), then run setup again",
            unterminated.line
        )
    })?;
    let values: Vec<String> = vars.iter().map(|(_, value)| grammar::quoted_value(value)).collect();
    let mut seen = vec![false; vars.len()];
    let mut out = String::with_capacity(old.len() + 128);
    let mut copied = 0;
    for assignment in &assignments {
        let Some(i) = vars.iter().position(|(key, _)| *key == assignment.key) else { continue };
        seen[i] = true;
        out.push_str(&old[copied..assignment.value.start]);
        out.push_str(&values[i]);
        if assignment.comment_glued {
            out.push(' ');
        }
        copied = assignment.value.end;
    }
    out.push_str(&old[copied..]);
    // The appended lines continue the file as its last line ends (LF when it has no line ending).
    let ending = if old.rfind('\n').is_some_and(|at| old[..at].ends_with('\r')) { "\r\n" } else { "\n" };
    for (i, (key, _)) in vars.iter().enumerate().filter(|(i, _)| !seen[*i]) {
        if !out.trim_start_matches(grammar::BOM).is_empty() && !out.ends_with('\n') {
            out.push_str(ending);
        }
        out.push_str(&format!("{key}={}{ending}", values[i]));
    }
    check_reads_back(&out, vars)?;
    Ok(out)
}

/// Reads the rewritten text as dotenvy will: each of our keys is assigned, and every assignment of
/// it loads exactly our value. Guards against writing what a reader would take differently.
fn check_reads_back(text: &str, vars: &[(&str, String)]) -> Result<()> {
    let assignments =
        grammar::assignments(text).map_err(|_| anyhow!("the rewritten file would not parse"))?;
    for (key, value) in vars {
        let found: Vec<Option<String>> = assignments
            .iter()
            .filter(|assignment| assignment.key == *key)
            .map(|assignment| grammar::literal_value(&text[assignment.value.clone()]))
            .collect();
        if found.is_empty() || found.iter().any(|read| read.as_deref() != Some(value.as_str())) {
            bail!("{key} would not read back as written; nothing was written (please report this)");
        }
    }
    Ok(())
}

/// Replaces `target` through a 0600 scratch file beside it, so a failure leaves the old content
/// whole. The target keeps its mode; a new one gets `new_mode`.
pub fn write_atomically(target: &Path, content: &[u8], new_mode: u32) -> Result<()> {
    let mode = std::fs::metadata(target).map(|m| m.permissions().mode() & 0o7777).unwrap_or(new_mode);
    crate::fsafe::write_atomically(target, content, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn vars() -> Vec<(&'static str, String)> {
        vec![("DATABASE_URL", "postgres://new".into())]
    }

    #[test]
    fn keeps_other_lines_byte_for_byte() {
        let old =
            "# comment\r\nFOO=bar\n\nexport DATABASE_URL=postgres://old\n  SPACED = x\nDATABASE_URL_X=keep";
        let new = rewrite(old, &vars()).unwrap();
        assert_eq!(
            new,
            "# comment\r\nFOO=bar\n\nexport DATABASE_URL=postgres://new\n  SPACED = x\nDATABASE_URL_X=keep"
        );
    }

    #[test]
    fn appends_missing_keys_on_a_new_line() {
        assert_eq!(rewrite("A=1", &vars()).unwrap(), "A=1\nDATABASE_URL=postgres://new\n");
        assert_eq!(rewrite("", &vars()).unwrap(), "DATABASE_URL=postgres://new\n");
    }

    #[test]
    fn links_are_followed_and_odd_files_refused() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let message = |path: &Path| format!("{:#}", update(path, &vars()).unwrap_err());
        // A chain of links: the file at its end is written, every link stays a link.
        std::fs::write(d.join("real.env"), "A=1\n").unwrap();
        symlink("real.env", d.join("middle")).unwrap();
        symlink(d.join("middle"), d.join(".env")).unwrap();
        assert!(update(&d.join(".env"), &vars()).unwrap().written);
        assert!(std::fs::symlink_metadata(d.join("middle")).unwrap().file_type().is_symlink());
        assert_eq!(
            std::fs::read_to_string(d.join("real.env")).unwrap(),
            "A=1\nDATABASE_URL=postgres://new\n"
        );

        symlink("nowhere/.env", d.join("dangling")).unwrap();
        assert!(message(&d.join("dangling")).contains("which does not exist"));
        assert!(!d.join("nowhere").exists());

        std::fs::create_dir(d.join("dir")).unwrap();
        assert!(message(&d.join("dir")).contains("is a directory"));
        symlink("dir", d.join("to-dir")).unwrap();
        assert!(message(&d.join("to-dir")).contains("is a directory"));

        let fifo = d.join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        symlink(&fifo, d.join("to-fifo")).unwrap();
        assert!(message(&d.join("to-fifo")).contains("not a regular file"));
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

        std::fs::write(d.join("locked"), "A=1\n").unwrap();
        std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o444)).unwrap();
        assert!(message(&d.join("locked")).contains("read-only"));
        assert_eq!(std::fs::read_to_string(d.join("locked")).unwrap(), "A=1\n");
        // Read-only and already right: nothing to write, nothing refused; only others lose reading.
        std::fs::write(d.join("done"), "DATABASE_URL=postgres://new\n").unwrap();
        std::fs::set_permissions(d.join("done"), std::fs::Permissions::from_mode(0o444)).unwrap();
        assert_eq!(
            update(&d.join("done"), &vars()).unwrap(),
            Outcome { written: false, tightened_from: Some(0o444) }
        );
        assert_eq!(mode_of(&d.join("done")), 0o400);
    }

    #[test]
    fn unchanged_when_already_set() {
        let text = "DATABASE_URL=postgres://new\n";
        assert_eq!(rewrite(text, &vars()).unwrap(), text);
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn secrets_make_the_file_its_owners_only() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            update(&d.join("new.env"), &vars()).unwrap(),
            Outcome { written: true, tightened_from: None }
        );
        assert_eq!(mode_of(&d.join("new.env")), 0o600);
        // Through a link: the target loses its group and other bits, the link stays a link.
        std::fs::write(d.join("shared.env"), "A=1\n").unwrap();
        std::fs::set_permissions(d.join("shared.env"), std::fs::Permissions::from_mode(0o664)).unwrap();
        symlink("shared.env", d.join(".env")).unwrap();
        let outcome = update(&d.join(".env"), &vars()).unwrap();
        assert_eq!(outcome, Outcome { written: true, tightened_from: Some(0o664) });
        assert_eq!(mode_of(&d.join("shared.env")), 0o600);
        assert!(std::fs::symlink_metadata(d.join(".env")).unwrap().file_type().is_symlink());
        // Already right and private: nothing to say.
        assert_eq!(update(&d.join(".env"), &vars()).unwrap(), Outcome::default());
        // Right values in a readable file (written by an older xtask): made private all the same.
        std::fs::set_permissions(d.join("shared.env"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(update(&d.join(".env"), &vars()).unwrap().tightened_from, Some(0o644));
        assert_eq!(mode_of(&d.join("shared.env")), 0o600);
    }

    const OURS: [&str; 3] = ["DATABASE_URL", "NOTES_DATABASE_URL", "XTASK_ADMIN_URL"];

    fn our_vars() -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", "postgres://geney:p%40ss@127.0.0.1:5433/geney".into()),
            ("NOTES_DATABASE_URL", "postgres://geney_notes:x@[::1]:5433/geney_notes?sslmode=disable".into()),
            // Not a URL this tool makes, but a value that needs quoting must survive too.
            ("XTASK_ADMIN_URL", "postgres://a b\"c'd$HOME#e\\f\ng".into()),
        ]
    }

    /// What dotenvy reads, line by line, errors included (as dotenvy's `load` does, without a BOM).
    fn dotenvy_reads(text: &str) -> Vec<Result<(String, String), String>> {
        let text = text.strip_prefix(grammar::BOM).unwrap_or(text);
        dotenvy::from_read_iter(text.as_bytes()).map(|item| item.map_err(|e| format!("{e:?}"))).collect()
    }

    /// Hand-made files where a line-based rewrite goes wrong: quotes spanning lines that hold our
    /// keys, `export` with tabs, a BOM, CRLF, comments, escapes, `$` substitutions, no final newline.
    const CORPUS: &[&str] = &[
        "",
        "\n",
        "A=1",
        "A=\"first\nDATABASE_URL=postgres://inside\nlast\"\nB=2\n",
        "CERT='-----BEGIN\nexport DATABASE_URL=x\n#not a comment\n-----END'\nDATABASE_URL=old\n",
        "A=it's\nDATABASE_URL=inside\n'\n",
        "export\tDATABASE_URL=old\nexport \t NOTES_DATABASE_URL = old # note\n",
        "\u{feff}DATABASE_URL=old\nA=1\n",
        "\u{feff}A=1\n",
        "A=1\r\nDATABASE_URL=old # keep me\r\nB=\"x\r\ny\"\r\n",
        "A=1\r\nB=2",
        "DATABASE_URL=old # note\nNOTES_DATABASE_URL=\"old\"  # quoted note\nXTASK_ADMIN_URL='old'\n",
        "DATABASE_URL=\nNOTES_DATABASE_URL=   \nXTASK_ADMIN_URL=#glued\n",
        "DATABASE_URL= # spaced\n",
        "  # DATABASE_URL=commented\n\t DATABASE_URL=indented\n",
        "DATABASE_URL_X=keep\nMY_DATABASE_URL=keep\nexportDATABASE_URL=keep\nexport=DATABASE_URL=keep\n",
        "A=\"esc \\\" DATABASE_URL=no \\\\\"\nB=s\\ p\nC=\\$HOME\nD=$HOME/x\nE=${HOME}y\n",
        "A=\"multi\nline\" # DATABASE_URL=no\nDATABASE_URL=\"multi\nline old\"\nZ=9\n",
        "DATABASE_URL=one\nA=1\nDATABASE_URL=two\n",
        "export DATABASE_URL=old\nexport NOTES_DATABASE_URL='old\nstill old'\nK.dot=1\n_U=2\n",
        "A=1 # c\nB=x#not-comment\nC=\"#\"\n",
        "A=v\\\nDATABASE_URL=old\n",
        "no equals here\nA=1\nvery bacon = yes\n=value\nDATABASE_URL=old\n",
    ];

    /// Rewrites `old` and reads both with dotenvy: every other key (and every line dotenvy rejects)
    /// reads as before, in order; each of ours reads exactly our value, once or wherever it was.
    fn assert_reads_back(old: &str, vars: &[(&str, String)]) {
        let new = rewrite(old, vars).unwrap_or_else(|e| panic!("{old:?}: {e:#}"));
        let before = dotenvy_reads(old);
        let after = dotenvy_reads(&new);
        let ours = |item: &Result<(String, String), String>| {
            item.as_ref().is_ok_and(|(key, _)| OURS.contains(&key.as_str()))
        };
        let others = |items: &[Result<(String, String), String>]| {
            items.iter().filter(|item| !ours(item)).cloned().collect::<Vec<_>>()
        };
        assert_eq!(others(&before), others(&after), "other keys changed in {old:?} -> {new:?}");
        for (key, value) in vars {
            let was = before.iter().filter(|i| i.as_ref().is_ok_and(|(k, _)| k == key)).count();
            let now: Vec<&str> = after
                .iter()
                .filter_map(|i| i.as_ref().ok().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()))
                .collect();
            assert_eq!(now.len(), was.max(1), "{key} in {old:?} -> {new:?}");
            assert!(now.iter().all(|v| v == value), "{key}: {now:?} in {old:?} -> {new:?}");
        }
        assert_eq!(rewrite(&new, vars).unwrap(), new, "a second rewrite changes {new:?}");
    }

    #[test]
    fn rewrites_read_back_with_dotenvy() {
        for old in CORPUS {
            assert_reads_back(old, &our_vars());
        }
    }

    /// Many files made of the pieces dotenvy treats specially, put together at random (a fixed
    /// seed, so a failure repeats): each file dotenvy reads without error reads back right after
    /// the rewrite, and each file the rewrite refuses is one dotenvy rejects too.
    #[test]
    fn generated_files_read_back_with_dotenvy() {
        const PIECES: &[&str] = &[
            "DATABASE_URL",
            "NOTES_DATABASE_URL",
            "A",
            "B.c",
            "export",
            "=",
            " ",
            "\t",
            "\n",
            "\n",
            "\r\n",
            "\"",
            "'",
            "\\",
            "#",
            "$X",
            "${X}",
            "x",
            "\u{feff}",
            "\u{a0}",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        let (mut read_back, mut refused) = (0, 0);
        for _ in 0..40_000 {
            let old: String = (0..next(24)).map(|_| PIECES[next(PIECES.len())]).collect();
            match grammar::assignments(&old) {
                Err(_) => {
                    assert!(dotenvy_reads(&old).iter().any(|i| i.is_err()), "refused, dotenvy reads {old:?}");
                    refused += 1;
                }
                Ok(_) if dotenvy_reads(&old).iter().all(|i| i.is_ok()) => {
                    assert_reads_back(&old, &our_vars());
                    read_back += 1;
                }
                Ok(_) => {}
            }
        }
        assert!(
            read_back > 2_000 && refused > 500,
            "too few cases: {read_back} read back, {refused} refused"
        );
    }

    #[test]
    fn only_our_values_change() {
        let vars = vec![("DATABASE_URL", "postgres://new".to_owned())];
        let cases = [
            ("export\tDATABASE_URL=old\n", "export\tDATABASE_URL=postgres://new\n"),
            ("DATABASE_URL=old # note\n", "DATABASE_URL=postgres://new # note\n"),
            ("DATABASE_URL=#glued\n", "DATABASE_URL=postgres://new #glued\n"),
            ("\u{feff}DATABASE_URL=old\r\n", "\u{feff}DATABASE_URL=postgres://new\r\n"),
            ("A=1\r\nB=2", "A=1\r\nB=2\r\nDATABASE_URL=postgres://new\r\n"),
            ("A=1\r\nB=2\n", "A=1\r\nB=2\nDATABASE_URL=postgres://new\n"),
            ("A=1\nB=2\r\n", "A=1\nB=2\r\nDATABASE_URL=postgres://new\r\n"),
            ("A=\"x\nDATABASE_URL=in\n\"\n", "A=\"x\nDATABASE_URL=in\n\"\nDATABASE_URL=postgres://new\n"),
        ];
        for (old, want) in cases {
            assert_eq!(rewrite(old, &vars).unwrap(), want, "{old:?}");
        }
    }

    #[test]
    fn an_unclosed_quote_is_refused() {
        for old in ["A=1\nB=\"open\nDATABASE_URL=old\n", "A=1\nB='x\\'\nDATABASE_URL=old\n"] {
            let error = rewrite(old, &vars()).unwrap_err();
            assert!(format!("{error:#}").contains("line 2 opens a quote"), "{error:#}");
            assert!(dotenvy_reads(old).iter().any(|item| item.is_err()), "dotenvy reads {old:?}");
        }
    }
}
