//! Putting a restored copy in a branch database's place so that no moment exists where its data is
//! only in a database the next `setup` would drop: the branch database is renamed aside first (a
//! rename is instant and, unlike a drop, cannot be left half-done), the copy takes its name, and
//! only then is the old one dropped. Ctrl-C, SIGTERM and SIGHUP wait for the swap to finish
//! (`signals::held`). After a SIGKILL between the two renames the old database waits under
//! its aside name, which `scratch::sweep` never drops while its branch database is missing, and
//! which the next `setup` or `restore` puts back ([`put_back`]).

use anyhow::{Context, Result, bail};
use postgres::Client;
use postgres::error::SqlState;

use crate::admin::{Admin, Label};
use crate::conn::PgError;
use crate::naming::quote_ident;

/// The purpose in the scratch name of a branch database moved aside.
pub const ASIDE: &str = "aside";
/// Sessions ended before the rename may reconnect at once (a pool): tries before giving up.
const RENAME_TRIES: u32 = 20;

/// Puts `scratch` in the place of `name`, this project's `expected` (logical database, branch).
/// When `name` cannot be replaced, `scratch` is dropped and `name` is untouched.
pub fn replace(
    admin: &mut Admin,
    scratch: &str,
    name: &str,
    project: &str,
    expected: (&str, &str),
) -> Result<()> {
    let _held = crate::signals::held();
    admin.with_catalog_lock(|admin| {
        let client = admin.client();
        let checked = check_replaceable(client, name, project, expected);
        let present = match checked {
            Ok(present) => present,
            Err(error) => {
                let _ = execute(
                    client,
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(scratch)),
                );
                return Err(error);
            }
        };
        if present && crate::invalid::is_invalid(client, name)? {
            // Its data is gone already; PostgreSQL allows nothing but dropping it.
            execute(client, &format!("DROP DATABASE {}", quote_ident(name)))?;
        } else if present {
            let aside = crate::scratch::name(ASIDE, project)?;
            crate::scratch::hold(client, &aside)?;
            rename_when_free(client, name, &aside)?;
            rename(client, scratch, name).with_context(|| {
                format!("database {name} is under the name {aside} and its replacement under {scratch}")
            })?;
            execute(client, &format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&aside))).with_context(
                || format!("drop the replaced database, now {aside} (the next setup drops it)"),
            )?;
            crate::scratch::release(client, &aside)?;
            return Ok(());
        }
        rename(client, scratch, name)
    })
}

/// Whether `name` exists; an error when it is not this project's `expected` database.
fn check_replaceable(client: &mut Client, name: &str, project: &str, expected: (&str, &str)) -> Result<bool> {
    let Some(label) = label_of(client, name)? else { return Ok(false) };
    match label {
        Some(l) if l.project == project && (l.database.as_str(), l.branch.as_str()) == expected => Ok(true),
        Some(l) if l.project == project => bail!(
            "refusing to replace database {name}: it is database `{}` of branch `{}`, not `{}` of branch `{}`",
            l.database,
            l.branch,
            expected.0,
            expected.1
        ),
        _ => bail!(
            "refusing to replace database {name}: it does not carry project `{project}`'s label, so this tool \
             did not create it"
        ),
    }
}

/// `None` when `name` does not exist; else its label, if any.
fn label_of(client: &mut Client, name: &str) -> Result<Option<Option<Label>>> {
    let row = client
        .query_opt(
            "SELECT pg_catalog.shobj_description(oid, 'pg_database') FROM pg_catalog.pg_database \
             WHERE datname = $1",
            &[&name],
        )
        .map_err(PgError::from)?;
    Ok(row.map(|row| Label::parse(row.get(0))))
}

/// Renames `from`, ending the sessions in it first (a rename needs it unused).
fn rename_when_free(client: &mut Client, from: &str, to: &str) -> Result<()> {
    for _ in 1..RENAME_TRIES {
        client
            .execute(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()",
                &[&from],
            )
            .map_err(PgError::from)?;
        match client.batch_execute(&format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(from),
            quote_ident(to)
        )) {
            Err(error) if error.code() == Some(&SqlState::OBJECT_IN_USE) => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            done => return done.map_err(|e| PgError::from(e).into()),
        }
    }
    rename(client, from, to).with_context(|| format!("sessions keep reconnecting to {from}; stop its users"))
}

fn rename(client: &mut Client, from: &str, to: &str) -> Result<()> {
    execute(client, &format!("ALTER DATABASE {} RENAME TO {}", quote_ident(from), quote_ident(to)))
        .with_context(|| format!("rename database {from} to {to}"))
}

fn execute(client: &mut Client, sql: &str) -> Result<()> {
    Ok(client.batch_execute(sql).map_err(PgError::from)?)
}

/// When `name` is missing and an interrupted restore left this project's `(logical, branch)`
/// database aside (its maker gone: its in-use lock is free), renames it back; returns its aside name.
pub fn put_back(
    admin: &mut Admin,
    name: &str,
    project: &str,
    expected: (&str, &str),
) -> Result<Option<String>> {
    // Looked at without the catalog lock first: almost always there is nothing to put back.
    if label_of(admin.client(), name)?.is_some() || asides(admin.client(), project, expected)?.is_empty() {
        return Ok(None);
    }
    admin.with_catalog_lock(|admin| {
        let client = admin.client();
        if label_of(client, name)?.is_some() {
            return Ok(None);
        }
        for aside in asides(client, project, expected)? {
            if !crate::scratch::try_hold(client, &aside)? {
                continue;
            }
            let renamed = rename(client, &aside, name);
            crate::scratch::release(client, &aside)?;
            renamed?;
            return Ok(Some(aside));
        }
        Ok(None)
    })
}

/// This project's aside databases of `(logical, branch)`, newest first.
fn asides(client: &mut Client, project: &str, expected: (&str, &str)) -> Result<Vec<String>> {
    let prefix = format!("{}{ASIDE}_", crate::scratch::PREFIX);
    let rows = client
        .query(
            "SELECT datname::text, pg_catalog.shobj_description(oid, 'pg_database') FROM pg_catalog.pg_database \
             WHERE starts_with(datname, $1) AND datconnlimit <> -2 ORDER BY oid DESC",
            &[&prefix],
        )
        .map_err(PgError::from)?;
    Ok(rows
        .iter()
        .filter(|row| {
            Label::parse(row.get(1)).is_some_and(|l| {
                l.project == project
                    && (l.database.as_str(), l.branch.as_str()) == expected
                    && l.template.is_none()
            })
        })
        .map(|row| row.get(0))
        .collect())
}

/// Whether the aside database `aside`, labelled `label`, must stay: no branch database of the
/// project (not a template, not a test's copy) with the same owner carries its label's logical
/// database and branch under a real name, so it holds that branch's only data. The owner must
/// match because a role may label its own database as it likes.
pub fn holds_the_only_data(client: &mut Client, aside: &str, label: &Label) -> Result<bool> {
    let rows = client
        .query(
            "SELECT pg_catalog.shobj_description(d.oid, 'pg_database') FROM pg_catalog.pg_database d \
             WHERE NOT pg_catalog.starts_with(d.datname, $1) AND d.datdba OPERATOR(pg_catalog.=) \
               (SELECT datdba FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) $2)",
            &[&crate::scratch::PREFIX, &aside],
        )
        .map_err(PgError::from)?;
    let twin = rows.iter().any(|row| {
        Label::parse(row.get(0)).is_some_and(|l| {
            l.project == label.project
                && l.database == label.database
                && l.branch == label.branch
                && l.template.is_none()
                && !l.test
        })
    });
    Ok(!twin)
}
