//! Pristine template databases: what new branch databases and per-test databases are copied from.
//!
//! A template holds one logical database with a set of migrations applied and the seeds loaded. Its
//! name and label carry a hash of everything that went into it (the migrations, the seeds, the
//! extensions, the owner), so a template is never stale: changed inputs make another template.
//! Nobody may connect to a finished one, so copying it never waits on a session.
//!
//! Two kinds, both labelled with their hash:
//! - the shared template: the migrations this branch has in common with the default branch (the
//!   merge base's files, unchanged here), labelled with the default branch; every branch starting
//!   from there copies it.
//! - the branch's template, when the branch adds migrations: the shared one copied, the branch's own
//!   applied on top. Labelled with the branch, so `prune` drops it with the branch's databases.
//!
//! The branch's template is what `setup` copies a missing branch database from and what tests copy
//! their databases from (`services/testdb`). Building one drops the older templates of the same
//! logical database and branch.

use std::time::Instant;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::admin::{Admin, Created, NewDatabase, TemplateState};
use crate::conn::Endpoint;
use crate::migrations::Migration;
use crate::naming::hex;
use crate::seeds::{self, Seed};
use crate::workspace::{Ctx, Database};
use crate::{git, runner};

/// Bumped when what a template holds changes shape (the record tables), so old ones are rebuilt.
const FORMAT: &str = "xtask template 1";

/// The logins a template is built with: the admin's (the database itself, its extensions) and the
/// database's own (its migrations and seeds: the service's role, or the admin with its own
/// search_path when the database has no role).
pub struct Logins<'a> {
    pub admin: &'a Endpoint,
    pub owner: &'a Endpoint,
}

/// What a database's template is made of: the branch's migrations and seeds.
struct Inputs<'a> {
    migrations: &'a [Migration],
    seeds: Vec<Seed>,
}

/// Makes sure the template of the branch's migrations (`files`, as read from its directory) and
/// seeds exists, building what is missing; returns its name. `changes` gets a line for each
/// template built.
pub fn ensure(
    ctx: &Ctx,
    admin: &mut Admin,
    logins: &Logins<'_>,
    db: &Database,
    (files, changes): (&[Migration], &mut Vec<String>),
) -> Result<String> {
    let inputs = Inputs { migrations: files, seeds: seeds::discover(&ctx.root, &db.seeds_dir(ctx))? };
    let full = hash(db, inputs.migrations, &inputs.seeds);
    let full_name = name(ctx, db, &full);
    if ready(ctx, admin, &full_name, &full, changes)? {
        return Ok(full_name);
    }
    let (shared_count, base) = shared_prefix(ctx, db, inputs.migrations);
    let all = inputs.migrations.len();
    let shared = match ensure_shared(
        ctx,
        admin,
        logins,
        db,
        &inputs,
        (shared_count, base.as_deref()),
        changes,
    ) {
        Ok(shared) if shared_count == all => return Ok(shared),
        Ok(shared) => Some(shared),
        Err(error) if shared_count == all => return Err(error),
        // The branch's seeds may need its own migrations; then they go in after all of them.
        Err(error) => {
            eprintln!(
                "setup: the shared template of `{}` could not be built ({error:#}); building this branch's \
                 from empty instead",
                db.logical
            );
            None
        }
    };
    let new = template_label(ctx, db, &ctx.branch.name, &full, None);
    let mut keep = vec![full_name.as_str()];
    match &shared {
        Some(shared_name) => {
            let extra = &inputs.migrations[shared_count..];
            let created = admin.create_from(&full_name, &new, Some(shared_name), |admin, scratch| {
                let mut client = runner::connect(logins.owner, scratch)?;
                apply(&mut client, extra)?;
                drop(client);
                admin.seal_template(scratch)
            })?;
            if let Created::New = created {
                changes.push(format!(
                    "built template {full_name}: {shared_name} and this branch's {} migration(s)",
                    extra.len()
                ));
            }
            keep.push(shared_name);
        }
        None => build(admin, logins, db, (&full_name, &new), (inputs.migrations, &inputs.seeds), changes)?,
    }
    // The branch's older templates; shared ones (with a base) are never this branch's to drop.
    for (name, label) in admin.templates_of(&ctx.config.project, &db.logical)? {
        let branch_own = label.branch == ctx.branch.name && label.base.is_none();
        if branch_own && is_mine(ctx, &label) && !keep.contains(&name.as_str()) {
            admin.drop_labelled(&name, &ctx.config.project, None)?;
        }
    }
    Ok(full_name)
}

/// The template of the migrations shared with the default branch, built when missing; its name.
fn ensure_shared(
    ctx: &Ctx,
    admin: &mut Admin,
    logins: &Logins<'_>,
    db: &Database,
    inputs: &Inputs,
    (shared_count, base): (usize, Option<&str>),
    changes: &mut Vec<String>,
) -> Result<String> {
    let migrations = &inputs.migrations[..shared_count];
    let shared = hash(db, migrations, &inputs.seeds);
    let shared_name = name(ctx, db, &shared);
    if ready(ctx, admin, &shared_name, &shared, changes)? {
        return Ok(shared_name);
    }
    let default_branch = default_branch_name(ctx);
    let new = template_label(ctx, db, &default_branch, &shared, base);
    build(admin, logins, db, (&shared_name, &new), (migrations, &inputs.seeds), changes)?;
    drop_superseded(ctx, admin, db, (&default_branch, base), &shared_name)?;
    Ok(shared_name)
}

/// Drops the shared templates that this one replaces: those built from an older commit of the
/// default branch (an ancestor of `base`). Branches started from an older commit may still copy
/// theirs; it goes once a newer one is built, so two branches never take turns rebuilding. Without
/// git, every other shared template is replaced.
fn drop_superseded(
    ctx: &Ctx,
    admin: &mut Admin,
    db: &Database,
    (default_branch, base): (&str, Option<&str>),
    keep: &str,
) -> Result<()> {
    for (name, label) in admin.templates_of(&ctx.config.project, &db.logical)? {
        let superseded = match (base, label.base.as_deref()) {
            _ if name == keep || label.branch != default_branch || !is_mine(ctx, &label) => false,
            (Some(ours), Some(theirs)) => theirs != ours && git::is_ancestor(&ctx.root, theirs, ours),
            (None, None) => true,
            _ => false,
        };
        if superseded {
            admin.drop_labelled(&name, &ctx.config.project, None)?;
        }
    }
    Ok(())
}

/// Builds a template of `migrations` and `seeds` from empty, saying so first: it is the one slow step.
fn build(
    admin: &mut Admin,
    logins: &Logins<'_>,
    db: &Database,
    (name, new): (&str, &NewDatabase<'_>),
    (migrations, seeds): (&[Migration], &[Seed]),
    changes: &mut Vec<String>,
) -> Result<()> {
    let started = Instant::now();
    eprintln!(
        "setup: building the template of `{}` ({} migration(s), {} seed file(s)); later branches copy it",
        db.logical,
        migrations.len(),
        seeds.len()
    );
    let created = admin.create_from(name, new, None, |admin, scratch| {
        build_from_empty(admin, logins, db, scratch, migrations, seeds)
    })?;
    // Another setup built it while this one waited for the catalog lock.
    if let Created::Existing = created {
        return Ok(());
    }
    let extensions = match db.spec.extensions.as_slice() {
        [] => String::new(),
        declared => format!(" with extension(s) {}", declared.join(", ")),
    };
    changes.push(format!("built template {name}{extensions} in {:.1} s", started.elapsed().as_secs_f64()));
    Ok(())
}

fn template_label<'a>(
    ctx: &'a Ctx,
    db: &'a Database,
    branch: &'a str,
    hash: &'a str,
    base: Option<&'a str>,
) -> NewDatabase<'a> {
    NewDatabase {
        project: &ctx.config.project,
        logical: &db.logical,
        branch,
        owner: db.spec.role.as_deref(),
        template: Some(hash),
        base,
        developer: ctx.developer.as_ref().map(|d| d.id.as_str()),
    }
}

/// Extensions first (as the admin user: most need a superuser), then the migrations and the seeds
/// as the owner, then sealed (see [`Admin::seal_template`]).
fn build_from_empty(
    admin: &mut Admin,
    logins: &Logins<'_>,
    db: &Database,
    scratch: &str,
    migrations: &[Migration],
    seeds: &[Seed],
) -> Result<()> {
    if !db.spec.extensions.is_empty() {
        crate::admin::enable_extensions(logins.admin, scratch, &db.spec.extensions).with_context(|| {
            format!("database `{}` (declared in {})", db.logical, db.spec.declared_in.display())
        })?;
    }
    // As the role's own login, not the admin's session under SET ROLE: code running under SET
    // ROLE can RESET ROLE and act as the admin.
    let mut client = runner::connect(logins.owner, scratch)?;
    apply(&mut client, migrations)?;
    if !seeds.is_empty() {
        seeds::run(&mut client, seeds)?;
    }
    drop(client);
    admin.seal_template(scratch)
}

/// Whether the template `name` of `hash` is there to copy. One the service's role owns (made
/// before templates were sealed) or that is open to connections may hold anything the role put
/// in it since: it is dropped, to be built again.
fn ready(ctx: &Ctx, admin: &mut Admin, name: &str, hash: &str, changes: &mut Vec<String>) -> Result<bool> {
    match admin.template_state(name, hash)? {
        TemplateState::Ready => Ok(true),
        TemplateState::Missing => Ok(false),
        TemplateState::Untrusted { owner } => {
            admin.drop_labelled(name, &ctx.config.project, None)?;
            changes.push(format!(
                "dropped template {name} to build it again: it belonged to {owner} or was open to \
                 connections, so it may have been changed since it was built"
            ));
            Ok(false)
        }
    }
}

fn apply(client: &mut postgres::Client, migrations: &[Migration]) -> Result<()> {
    runner::ensure_table(client)?;
    for (index, migration) in migrations.iter().enumerate() {
        runner::apply(client, migration, index + 1 == migrations.len())?;
    }
    Ok(())
}

/// How many of the branch's migrations, from the oldest, the default branch has too (present at
/// the merge base and unchanged since), and the merge base. Without git or a default branch, all
/// of them and no commit.
fn shared_prefix(ctx: &Ctx, db: &Database, files: &[Migration]) -> (usize, Option<String>) {
    let Some(base) = git::default_branch(&ctx.root, &ctx.config.default_branches)
        .ok()
        .flatten()
        .and_then(|branch| git::merge_base_with_head(&ctx.root, &branch))
    else {
        return (files.len(), None);
    };
    let dir = db.migrations_dir(ctx).to_string_lossy().into_owned();
    let (Ok(at_base), Ok(changed)) =
        (git::files_at(&ctx.root, &base, &dir), git::changed_since(&ctx.root, &base, &dir))
    else {
        return (files.len(), None);
    };
    let count = files
        .iter()
        .take_while(|file| {
            let path = file.up.to_string_lossy();
            at_base.iter().any(|p| *p == path) && !changed.iter().any(|p| *p == path)
        })
        .count();
    (count, Some(base))
}

/// The default branch as git names it here (`main` for `origin/main`), else the configured one.
fn default_branch_name(ctx: &Ctx) -> String {
    let found = git::default_branch(&ctx.root, &ctx.config.default_branches).ok().flatten();
    found
        .as_deref()
        .and_then(|r| r.strip_prefix("refs/remotes/origin/").or_else(|| r.strip_prefix("refs/heads/")))
        .map_or_else(|| ctx.config.default_branches[0].clone(), str::to_owned)
}

/// SHA-256 over everything a template's content depends on.
fn hash(db: &Database, migrations: &[Migration], seeds: &[Seed]) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(FORMAT.as_bytes());
    field(db.logical.as_bytes());
    field(db.spec.role.as_deref().unwrap_or_default().as_bytes());
    for extension in &db.spec.extensions {
        field(extension.as_bytes());
    }
    for migration in migrations {
        field(&migration.version.to_le_bytes());
        field(migration.description.as_bytes());
        field(&migration.checksum);
        field(&[u8::from(migration.no_transaction)]);
    }
    field(b"seeds");
    for seed in seeds {
        field(seed.path.to_string_lossy().as_bytes());
        field(&seed.checksum);
    }
    hex(&hasher.finalize())
}

/// `<base>__tpl_<8 hex digits>`: at most 62 bytes, and no branch database is ever named so (a
/// hashed branch name has hex digits after its `__`). On a server developers share, each has
/// templates of their own (the digits hash the developer too), dropped only by them.
fn name(ctx: &Ctx, db: &Database, hash: &str) -> String {
    match &ctx.developer {
        Some(developer) => {
            format!(
                "{}__tpl_{}",
                db.spec.base,
                crate::naming::short_hash(&format!("{hash} {}", developer.id))
            )
        }
        None => format!("{}__tpl_{}", db.spec.base, &hash[..8]),
    }
}

/// Whether a template is this developer's (or, without developers, anyone's) to drop.
fn is_mine(ctx: &Ctx, label: &crate::admin::Label) -> bool {
    label.developer.as_deref() == ctx.developer.as_ref().map(|d| d.id.as_str())
}
