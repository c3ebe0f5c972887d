//! The declared schema: reading a database's schema from the catalogs, and the statements that
//! turn one schema into another (for `prepare` and `schema --check`).

mod catalog;
mod diff;
mod sql;

pub use catalog::{Def, Snapshot, introspect};
pub use diff::{Note, Statement, diff};

/// A migration file's text: a header, then each statement under its notes, blank-line separated.
pub fn render(header: &[String], statements: &[Statement]) -> String {
    let mut text: String = header.iter().map(|line| format!("-- {line}\n")).collect();
    for statement in statements {
        text.push('\n');
        for note in &statement.notes {
            let (label, message) = match note {
                Note::Destructive(message) => ("DESTRUCTIVE", message),
                Note::Review(message) => ("REVIEW", message),
            };
            text += &format!("-- {label}: {message}\n");
        }
        text += &statement.sql;
        text.push('\n');
    }
    text
}

/// How many statements carry a DESTRUCTIVE note.
pub fn destructive_count(statements: &[Statement]) -> usize {
    statements.iter().filter(|s| s.notes.iter().any(|n| matches!(n, Note::Destructive(_)))).count()
}

/// Objects of kinds this tool does not write SQL for that only one side has, or that differ,
/// each named with the side (`from_name` or `to_name`) that has it.
pub fn unmodelled_differences(from: &Snapshot, to: &Snapshot, from_name: &str, to_name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, fingerprint) in &from.unsupported {
        match to.unsupported.get(key) {
            None => lines.push(format!("{key} (only in {from_name})")),
            Some(other) if other != fingerprint => lines.push(format!("{key} (differs)")),
            Some(_) => {}
        }
    }
    for key in to.unsupported.keys().filter(|key| !from.unsupported.contains_key(*key)) {
        lines.push(format!("{key} (only in {to_name})"));
    }
    lines
}

/// Objects both sides have whose definitions were not read, so only their names were compared.
pub fn compared_by_name_only(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.unsupported.iter().filter(|(_, f)| f.is_empty()).map(|(k, _)| k.as_str()).collect()
}

/// Objects this tool writes SQL for that only one side has, or that differ, each named with the
/// side (`from_name` or `to_name`) that has it.
pub fn object_differences(from: &Snapshot, to: &Snapshot, from_name: &str, to_name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, object) in &from.objects {
        match to.objects.get(key) {
            None => lines.push(format!("{key} (only in {from_name})")),
            Some(other) if !other.def.same_as(&object.def) => lines.push(format!("{key} (differs)")),
            Some(_) => {}
        }
    }
    for key in to.objects.keys().filter(|key| !from.objects.contains_key(*key)) {
        lines.push(format!("{key} (only in {to_name})"));
    }
    lines
}

/// Takes out what setup grants a reader (`admin::grant_reads`): USAGE on schema public, SELECT on
/// its tables, and SELECT on the tables its owner makes later. `readers` are unquoted names; a
/// grantee is written as PostgreSQL writes a role, quoted only where it must be.
pub fn forget_setup_reads(snapshot: &mut Snapshot, readers: &[String]) {
    let reader =
        |grantee: &str| readers.iter().any(|r| grantee == r || grantee == crate::naming::quote_ident(r));
    let given_by_setup = |def: &Def| match def {
        Def::Grant { target, column: None, grantee, .. } if reader(grantee) => match target.as_str() {
            "SCHEMA public" => Some("USAGE"),
            t if t.starts_with("TABLE public.") => Some("SELECT"),
            _ => None,
        },
        Def::DefaultPrivileges { schema: Some(schema), on, grantee, revoke: false, .. }
            if schema == "public" && on == "TABLES" && reader(grantee) =>
        {
            Some("SELECT")
        }
        _ => None,
    };
    snapshot.objects.retain(|_, object| {
        let Some(privilege) = given_by_setup(&object.def) else { return true };
        match &mut object.def {
            Def::Grant { privileges, grantable, default, .. } => {
                privileges.retain(|p| p != privilege);
                grantable.retain(|p| p != privilege);
                privileges != default || !grantable.is_empty()
            }
            Def::DefaultPrivileges { privileges, grantable, .. } => {
                privileges.retain(|p| p != privilege);
                grantable.retain(|p| p != privilege);
                !privileges.is_empty()
            }
            _ => true,
        }
    });
}
