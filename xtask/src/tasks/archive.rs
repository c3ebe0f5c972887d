//! What a pg_dump archive holds, from its own table of contents (`pg_restore --list`): the database
//! it was dumped from (the header's `dbname:`) and the owner of every entry. `restore` refuses an
//! archive that is not a dump of the target database (whatever its file is called), and leaves out
//! the entries its restoring role may not replay (the extensions the admin makes beforehand).

use std::path::Path;

use anyhow::{Result, bail};

use crate::workspace::Database;

/// Owners that are no role of any project: the schema `public` belongs to whoever owns the database.
const DATABASE_OWNER: &str = "pg_database_owner";

/// The table of contents of an archive.
pub struct Toc {
    /// The database it was dumped from.
    pub dbname: Option<String>,
    pub entries: Vec<Entry>,
}

/// One line of `pg_restore --list`: `<id>; <tableoid> <oid> <kind> <schema> <name> <owner>`.
pub struct Entry {
    pub line: String,
    /// What follows the three numbers: kind, schema, name and owner.
    body: String,
    pub owner: String,
}

impl Entry {
    /// The extension an `EXTENSION` entry makes, or its `COMMENT` names.
    pub fn extension(&self) -> Option<&str> {
        let name = self
            .body
            .strip_prefix("EXTENSION - ")
            .or_else(|| self.body.strip_prefix("COMMENT - EXTENSION "))?;
        name.split_whitespace().next()
    }

    /// Kind, schema and name, for messages.
    fn object(&self) -> &str {
        self.body.strip_suffix(&self.owner).unwrap_or(&self.body).trim_end()
    }
}

impl Toc {
    pub fn parse(listing: &str) -> Toc {
        let mut dbname = None;
        let mut entries = Vec::new();
        for line in listing.lines() {
            if let Some(comment) = line.strip_prefix(';') {
                if let Some(name) = comment.trim_start().strip_prefix("dbname:") {
                    dbname.get_or_insert_with(|| name.trim().to_owned());
                }
                continue;
            }
            let Some((_, rest)) = line.split_once("; ") else { continue };
            let mut numbers = rest.splitn(3, ' ');
            let (Some(_), Some(_), Some(body)) = (numbers.next(), numbers.next(), numbers.next()) else {
                continue;
            };
            // pg_restore prints the owner last, an empty one as nothing after the final space.
            let owner = body.rsplit_once(' ').map_or("", |(_, owner)| owner).to_owned();
            entries.push(Entry { line: line.to_owned(), body: body.to_owned(), owner });
        }
        Toc { dbname, entries }
    }

    /// The extensions the archive makes.
    pub fn extensions(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.body.starts_with("EXTENSION "))
            .filter_map(|e| e.extension().map(str::to_owned))
            .collect();
        names.dedup();
        names
    }

    /// The list for `pg_restore --use-list`: every entry but those of `extensions` and their comments.
    pub fn list_without(&self, extensions: &[String]) -> String {
        let kept =
            self.entries.iter().filter(|e| e.extension().is_none_or(|x| !extensions.iter().any(|w| w == x)));
        kept.map(|e| format!("{}\n", e.line)).collect()
    }
}

/// Refuses `toc` (of `file`) unless its objects belong to `target`'s owner (its role, or the admin
/// user `admin` for a database without a role) and it is a dump of `target` (on any branch).
pub fn check(toc: &Toc, file: &Path, target: &Database, all: &[Database], admin: &str) -> Result<()> {
    let owner = target.spec.role.as_deref().unwrap_or(admin);
    let foreign: Vec<&Entry> = toc
        .entries
        .iter()
        .filter(|e| !(e.owner.is_empty() || e.owner == owner || e.owner == DATABASE_OWNER))
        // Up to PostgreSQL 14 the bootstrap superuser, not pg_database_owner, owns `public`.
        .filter(|e| !(e.owner == admin && ["SCHEMA - public", "ACL - SCHEMA public"].contains(&e.object())))
        .collect();
    let shown = file.display();
    let Some(first) = foreign.first() else { return check_database(toc, file, target, all) };
    let mut owners: Vec<&str> = foreign.iter().map(|e| e.owner.as_str()).collect();
    owners.sort_unstable();
    owners.dedup();
    let ours = |role: &str| all.iter().find(|d| d.spec.role.as_deref() == Some(role));
    let (roles, whose) = (owners.join(", "), owners.iter().map(|o| ours(o)).collect::<Vec<_>>());
    if let Some(Some(other)) = whose.iter().find(|d| d.is_some()) {
        bail!(
            "{shown} holds objects of role {}, which owns `{}`, not `{}` (first: {}): restore it with `--db {}`; \
             nothing was changed",
            other.spec.role.as_deref().unwrap_or_default(),
            other.logical,
            target.logical,
            first.object(),
            other.logical
        );
    }
    bail!(
        "{shown} belongs to another project's roles: its objects are owned by {roles} (first: {}), none of them \
         a role of this project, whose `{}` is owned by {owner}. Restore it in the project it was dumped from \
         (its own `cargo xtask restore`); to take its data into this project, restore it there and copy the \
         rows you need. Nothing was changed",
        first.object(),
        target.logical
    )
}

/// Refuses `toc` unless its database is named like `target`'s (on any branch).
fn check_database(toc: &Toc, file: &Path, target: &Database, all: &[Database]) -> Result<()> {
    let shown = file.display();
    let Some(dbname) = &toc.dbname else {
        bail!(
            "{shown} names no database in its table of contents (`pg_restore --list`): give a file written by `cargo xtask backup`"
        );
    };
    match dumped_logical(dbname, all) {
        Some(logical) if logical.logical == target.logical => {}
        Some(other) => bail!(
            "{shown} is a dump of database {dbname}, which is `{}`'s, not `{}`'s (its table of contents says \
             so, whatever the file is called): restore it with `--db {}`, or give a backup of `{}`; nothing \
             was changed",
            other.logical,
            target.logical,
            other.logical,
            target.logical
        ),
        None => bail!(
            "{shown} is a dump of database {dbname}, which is no database of this project (`{}` is {} on the \
             default branch and {}_<branch> on others): give a backup of `{}` written by `cargo xtask backup`; \
             nothing was changed",
            target.logical,
            target.spec.base,
            target.spec.base,
            target.logical
        ),
    }
    Ok(())
}

/// The logical database whose branch databases `dbname` is named like: the longest base it
/// equals or starts with followed by `_` (`shop_audit_x` is `shop_audit`'s, not `shop`'s).
fn dumped_logical<'a>(dbname: &str, all: &'a [Database]) -> Option<&'a Database> {
    all.iter()
        .filter(|d| {
            let base = d.spec.base.as_str();
            dbname == base || dbname.strip_prefix(base).is_some_and(|rest| rest.starts_with('_'))
        })
        .max_by_key(|d| d.spec.base.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = ";\n; Archive created at 2026-12-02 16:49:23 UTC\n;     dbname: rxp_notes\n\
        ;     TOC Entries: 16\n;\n; Selected TOC Entries:\n;\n\
        2; 3079 16386 EXTENSION - pgcrypto \n\
        3397; 0 0 COMMENT - EXTENSION pgcrypto \n\
        253; 1255 16431 FUNCTION public ok(integer) notes_role\n\
        216; 1259 16432 TABLE public t notes_role\n\
        3398; 0 0 COMMENT public TABLE t notes_role\n\
        3388; 0 16432 TABLE DATA public t notes_role\n\
        3350; 0 0 ACL - SCHEMA public pg_database_owner\n";

    fn database(logical: &str, base: &str, role: Option<&str>) -> Database {
        let spec = crate::services::DatabaseSpec {
            logical: logical.into(),
            base: base.into(),
            project: "rxp".into(),
            role: role.map(str::to_owned),
            extensions: vec![],
            reads: vec![],
            declared_in: "Cargo.toml".into(),
        };
        Database {
            logical: logical.into(),
            name: crate::naming::DbName::for_branch(base, "main", true),
            spec,
        }
    }

    #[test]
    fn the_table_of_contents_names_database_owners_and_extensions() {
        let toc = Toc::parse(LISTING);
        assert_eq!(toc.dbname.as_deref(), Some("rxp_notes"));
        assert_eq!(toc.entries.len(), 7);
        let owners: Vec<&str> = toc.entries.iter().map(|e| e.owner.as_str()).collect();
        assert_eq!(
            owners,
            ["", "", "notes_role", "notes_role", "notes_role", "notes_role", "pg_database_owner"]
        );
        assert_eq!(toc.extensions(), ["pgcrypto"]);
        let list = toc.list_without(&["pgcrypto".into()]);
        assert!(
            !list.contains("pgcrypto") && list.starts_with("253; ") && list.lines().count() == 5,
            "{list}"
        );
        assert_eq!(toc.list_without(&[]).lines().count(), 7);
    }

    #[test]
    fn only_a_dump_of_the_target_by_its_owner_is_accepted() {
        let notes = database("notes", "rxp_notes", Some("notes_role"));
        let billing = database("billing", "rxp_billing", Some("billing_role"));
        let notes_x = database("notes_x", "rxp_notes_x", Some("x_role"));
        let all = [notes.clone(), billing.clone(), notes_x.clone()];
        let file = Path::new("billing--main--X.dump");
        let toc = Toc::parse(LISTING);
        check(&toc, file, &notes, &all, "postgres").unwrap();
        let refused = |target: &Database, toc: &Toc| {
            format!("{:#}", check(toc, file, target, &all, "postgres").unwrap_err())
        };
        assert!(refused(&billing, &toc).contains("role notes_role, which owns `notes`, not `billing`"));
        let billing_toc = Toc::parse(&LISTING.replace("notes_role", "billing_role"));
        let message = refused(&billing, &billing_toc);
        assert!(
            message.contains("dump of database rxp_notes, which is `notes`'s, not `billing`'s"),
            "{message}"
        );
        let branch = Toc::parse(&LISTING.replace("dbname: rxp_notes", "dbname: rxp_notes_x_feature"));
        assert!(refused(&notes, &branch).contains("`notes_x`'s, not `notes`'s"));
        let foreign = Toc::parse(&LISTING.replace("dbname: rxp_notes", "dbname: other_notes"));
        assert!(refused(&notes, &foreign).contains("no database of this project"));
        let theirs = Toc::parse(&LISTING.replace("notes_role", "billing_role"));
        assert!(refused(&notes, &theirs).contains("role billing_role, which owns `billing`"));
        let other_project = Toc::parse(&LISTING.replace("notes_role", "elsewhere_notes"));
        let message = refused(&notes, &other_project);
        assert!(
            message.contains("another project's roles") && message.contains("elsewhere_notes"),
            "{message}"
        );
        assert!(message.contains("first: FUNCTION public ok(integer)"), "{message}");
    }
}
