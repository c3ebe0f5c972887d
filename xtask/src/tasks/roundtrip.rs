//! Does every down undo its up? Each migration is applied, then rolled back newest first and applied
//! again, in a throwaway database; the catalog after each step must equal the one it should restore.

use anyhow::{Context, Result, bail};
use postgres::Client;

use crate::conn::Endpoint;
use crate::migrations::{self, Migration};
use crate::runner;
use crate::schema::{self, Snapshot};
use crate::workspace::{Ctx, Database};

/// What a round trip covered.
pub struct Checked {
    /// Migrations whose down was run and compared.
    pub downs: usize,
    /// The newest up-only migration, where the walk back stopped, and how many older downs were
    /// therefore not run.
    pub stopped_at: Option<(std::path::PathBuf, usize)>,
}

impl Checked {
    pub fn describe(&self) -> String {
        let mut text = format!("{} down(s) undo their ups", self.downs);
        if let Some((file, unchecked)) = &self.stopped_at {
            text.push_str(&format!(
                "; the walk back stops at {}, which has no down file ({unchecked} older down(s) not run)",
                file.display()
            ));
        }
        text
    }
}

/// Round trip of `files[first..]` (the older ones are only applied). An error names the first
/// migration whose up or down fails, or whose down leaves the schema different, with the difference.
pub fn round_trip(
    ctx: &Ctx,
    endpoint: &Endpoint,
    database: &Database,
    files: &[Migration],
    first: usize,
) -> Result<Checked> {
    let (_scratch, mut client) = super::schema::empty_database(endpoint, database, "roundtrip")?;
    runner::ensure_table(&mut client)?;
    for migration in &files[..first] {
        runner::apply(&mut client, migration, false)?;
    }
    let checked = &files[first..];
    // states[i] is the schema before checked[i]; the last one is after them all.
    let mut states = vec![schema::introspect(&mut client)?];
    for migration in checked {
        runner::apply(&mut client, migration, false)?;
        states.push(schema::introspect(&mut client)?);
    }
    let reversible = checked.len() - checked.iter().rev().take_while(|m| m.down.is_some()).count();
    for (index, migration) in checked.iter().enumerate().skip(reversible).rev() {
        let down = migration.down.as_ref().expect("only migrations with a down file are walked back");
        let sql = migrations::read_text(&ctx.root, down)?;
        runner::revert(&mut client, down, &sql, migration.version)?;
        expect_state(&mut client, &states[index], || {
            format!(
                "{} does not undo {}: after it, the schema still differs from the one before the up",
                down.display(),
                migration.up.display()
            )
        })?;
    }
    for (index, migration) in checked.iter().enumerate().skip(reversible) {
        runner::apply(&mut client, migration, false)
            .with_context(|| format!("{} fails when applied again after its down", migration.up.display()))?;
        expect_state(&mut client, &states[index + 1], || {
            format!("{} gives a different schema when applied again after its down", migration.up.display())
        })?;
    }
    let walked_over = &checked[..reversible];
    let stopped_at = walked_over.last().map(|newest_up_only| {
        (newest_up_only.up.clone(), walked_over.iter().filter(|m| m.down.is_some()).count())
    });
    Ok(Checked { downs: checked.len() - reversible, stopped_at })
}

fn expect_state(client: &mut Client, expected: &Snapshot, problem: impl Fn() -> String) -> Result<()> {
    let now = schema::introspect(client)?;
    let left = schema::diff(&now, expected);
    let unmodelled = schema::unmodelled_differences(&now, expected, "now", "expected");
    if left.is_empty() && unmodelled.is_empty() {
        return Ok(());
    }
    let mut detail = schema::render(&[], &left);
    for line in unmodelled {
        detail.push_str(&format!("-- {line}\n"));
    }
    bail!("{}; SQL that would restore it:\n{}", problem(), detail.trim_end())
}
