//! The declared schema: reading a database's schema from the catalogs, and the statements that
//! turn one schema into another (for `prepare` and `schema --check`).

mod catalog;
mod diff;
mod sql;

pub use catalog::{Snapshot, introspect};
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

/// Objects only one side has that this tool cannot write SQL for (domains, policies...), each
/// named with the side (`from_name` or `to_name`) that has it.
pub fn unmodelled_differences(from: &Snapshot, to: &Snapshot, from_name: &str, to_name: &str) -> Vec<String> {
    let only = |a: &Snapshot, b: &Snapshot, side: &str| -> Vec<String> {
        a.unsupported.difference(&b.unsupported).map(|key| format!("{key} (only in {side})")).collect()
    };
    let mut lines = only(from, to, from_name);
    lines.extend(only(to, from, to_name));
    lines
}
