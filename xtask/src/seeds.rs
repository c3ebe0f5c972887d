//! Development data: `seeds/<db>/*.sql`, run in name order in one transaction, and remembered (file
//! and checksum) so that `db-status` can say when they changed since.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use postgres::Client;
use sha2::{Digest, Sha384};

use crate::conn::PgError;
use crate::migrations;

pub struct Seed {
    pub path: PathBuf,
    pub sql: String,
    pub checksum: Vec<u8>,
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _xtask_seeds (
    file TEXT PRIMARY KEY,
    checksum BYTEA NOT NULL,
    seeded_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

pub fn discover(root: &Path, dir: &Path) -> Result<Vec<Seed>> {
    migrations::sql_files(root, dir)?
        .into_iter()
        .map(|name| {
            let path = dir.join(name);
            let sql = migrations::read_text(root, &path)?;
            Ok(Seed { checksum: Sha384::digest(sql.as_bytes()).to_vec(), sql, path })
        })
        .collect()
}

/// Runs every seed in one transaction; on error nothing of any seed stays.
pub fn run(client: &mut Client, seeds: &[Seed]) -> Result<()> {
    for seed in seeds {
        crate::migrations::refuse_unrunnable(&seed.path, &seed.sql, "seed")
            .and_then(|()| crate::migrations::refuse_own_transaction(&seed.path, &seed.sql, "seed"))
            .context("seeds refused; none was loaded")?;
    }
    let mut tx = client.transaction().map_err(PgError::from)?;
    let mut failure = None;
    for (index, seed) in seeds.iter().enumerate() {
        if let Err(error) = tx.batch_execute(&seed.sql) {
            failure = Some((index, error));
            break;
        }
    }
    if let Some((index, error)) = failure {
        drop(tx);
        let seed = &seeds[index];
        if crate::conn::connection_lost(&error) {
            return Err(PgError::from(error)).context(format!(
                "the connection to the server was lost while seed {} ran: the seeds load in one \
                 transaction, so none of them is left behind",
                seed.path.display()
            ));
        }
        let earlier: Vec<&str> = seeds[..index].iter().map(|s| s.sql.as_str()).collect();
        let located = crate::runner::locate(client, &earlier, &error, &seed.path, &seed.sql, 0);
        return Err(anyhow!(located)).context(format!(
            "seed {} failed; every seed of this database was rolled back",
            seed.path.display()
        ));
    }
    let record = |tx: &mut postgres::Transaction| -> Result<(), postgres::Error> {
        tx.batch_execute(CREATE_TABLE)?;
        tx.execute("DELETE FROM _xtask_seeds", &[])?;
        for seed in seeds {
            let file = seed.path.to_string_lossy().into_owned();
            tx.execute(
                "INSERT INTO _xtask_seeds (file, checksum) VALUES ($1, $2)",
                &[&file, &seed.checksum],
            )?;
        }
        Ok(())
    };
    record(&mut tx).map_err(PgError::from).context("record the seeds")?;
    tx.commit().map_err(PgError::from).context("commit the seeds")?;
    Ok(())
}

/// Whether the recorded seeds differ from the files: `None` when never seeded.
pub fn changed_since_seeded(client: &mut Client, seeds: &[Seed]) -> Result<Option<bool>> {
    let rows = match client.query("SELECT file, checksum FROM _xtask_seeds ORDER BY file", &[]) {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => return Ok(None),
        Err(e) => return Err(PgError::from(e).into()),
    };
    let recorded: Vec<(String, Vec<u8>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut current: Vec<(String, Vec<u8>)> =
        seeds.iter().map(|s| (s.path.to_string_lossy().into_owned(), s.checksum.clone())).collect();
    current.sort();
    Ok(Some(recorded != current))
}
