//! Drift: a branch database whose schema was changed outside its migrations (a column added by
//! hand in psql). When this tool migrates a database it keeps a fingerprint of its catalogs in
//! the comment of the migration record table (owned by the role that migrates, carried by dumps,
//! and outside what the schema comparison reads); `db-status` and `pre-commit` compare it with
//! the catalogs' current one, which costs one query, and `schema --check --live` shows what
//! differs and the SQL that would remove it.

use anyhow::{Context, Result};
use postgres::Client;

use crate::conn::PgError;

const RECORDS: &str = "public._sqlx_migrations";
const PREFIX: &str = "xtask schema fingerprint: ";

/// One line per schema fact of the user's namespaces, each by name (never by oid, which a dump
/// and restore or a dropped and re-made object changes). An ACL is listed as its items in order
/// with PostgreSQL's default for a NULL one: granted then revoked, or never granted, reads the same.
const FACTS: &str = "
WITH ns AS (SELECT oid, nspname FROM pg_namespace
            WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'),
records AS (SELECT oid FROM pg_class
            WHERE oid IN (to_regclass('public._sqlx_migrations'), to_regclass('public._xtask_seeds'))),
rel AS (SELECT c.* FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
        WHERE c.oid NOT IN (SELECT oid FROM records)
          AND NOT EXISTS (SELECT 1 FROM pg_index x WHERE x.indexrelid = c.oid
                          AND x.indrelid IN (SELECT oid FROM records)))
SELECT format('namespace %s %s', nspname,
              (SELECT (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(coalesce(n.nspacl, acldefault('n', n.nspowner))) i) FROM pg_namespace n WHERE n.oid = ns.oid))
       FROM ns
UNION ALL SELECT format('extension %s %s', extname, extversion) FROM pg_extension
UNION ALL SELECT format('relation %s %s %s %s %s %s %s %s %s', oid::regclass, relkind, relpersistence,
                        (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(coalesce(relacl, acldefault(CASE WHEN relkind = 'S' THEN 's' ELSE 'r' END::\"char\", relowner))) i),
                        reloptions, relrowsecurity, relforcerowsecurity, relreplident,
                        pg_get_expr(relpartbound, oid)) FROM rel
UNION ALL SELECT format('column %s %s %s %s %s %s %s %s %s %s %s %s %s', a.attrelid::regclass, a.attname,
                        format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity, a.attgenerated,
                        (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(a.attacl) i), a.attislocal, a.attcollation::regcollation, a.attstorage, a.attcompression,
                        nullif(a.attstattarget, -1), a.attoptions)
          FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL SELECT format('default %s %s %s', d.adrelid::regclass, a.attname, pg_get_expr(d.adbin, d.adrelid))
          FROM pg_attrdef d JOIN rel ON rel.oid = d.adrelid
          JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
UNION ALL SELECT format('sequence %s %s %s %s %s %s %s %s', s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart,
                        s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
          FROM pg_sequence s JOIN rel ON rel.oid = s.seqrelid
UNION ALL SELECT format('constraint %s %s %s', co.conrelid::regclass, co.conname, pg_get_constraintdef(co.oid))
          FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace
          WHERE co.conrelid = 0 OR co.conrelid IN (SELECT oid FROM rel)
UNION ALL SELECT format('index %s %s', pg_get_indexdef(i.indexrelid), i.indisreplident)
          FROM pg_index i JOIN rel ON rel.oid = i.indexrelid
UNION ALL SELECT format('view %s %s', rel.oid::regclass, pg_get_viewdef(rel.oid)) FROM rel WHERE relkind IN ('v', 'm')
UNION ALL SELECT format('inherits %s %s', inhrelid::regclass, inhparent::regclass)
          FROM pg_inherits JOIN rel ON rel.oid = inhrelid
UNION ALL SELECT format('trigger %s %s %s', t.tgrelid::regclass, pg_get_triggerdef(t.oid), t.tgenabled)
          FROM pg_trigger t JOIN rel ON rel.oid = t.tgrelid WHERE NOT t.tgisinternal
UNION ALL SELECT format('policy %s %s %s %s %s %s %s', p.polrelid::regclass, p.polname, p.polcmd, p.polpermissive,
                        p.polroles::regrole[], pg_get_expr(p.polqual, p.polrelid),
                        pg_get_expr(p.polwithcheck, p.polrelid))
          FROM pg_policy p JOIN rel ON rel.oid = p.polrelid
UNION ALL SELECT format('rule %s', pg_get_ruledef(w.oid)) FROM pg_rewrite w JOIN rel ON rel.oid = w.ev_class
          WHERE w.rulename <> '_RETURN'
UNION ALL SELECT format('function %s %s %s', p.oid::regprocedure,
                        md5(CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid)
                                 ELSE p.prosrc END), (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(coalesce(p.proacl, acldefault('f', p.proowner))) i))
          FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
UNION ALL SELECT format('type %s %s %s', t.oid::regtype, t.typtype, (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(coalesce(t.typacl, acldefault('T', t.typowner))) i))
          FROM pg_type t JOIN ns ON ns.oid = t.typnamespace WHERE t.typtype IN ('e', 'd', 'r', 'c', 'm')
UNION ALL SELECT format('label %s %s %s', e.enumtypid::regtype,
                        row_number() OVER (PARTITION BY e.enumtypid ORDER BY e.enumsortorder), e.enumlabel)
          FROM pg_enum e
UNION ALL SELECT format('collation %s %s', co.oid::regcollation,
                        to_jsonb(co) - 'oid' - 'collnamespace' - 'collowner' - 'collversion')
          FROM pg_collation co JOIN ns ON ns.oid = co.collnamespace
UNION ALL SELECT format('default acl %s %s %s %s', defaclrole::regrole,
                        (SELECT nspname FROM pg_namespace WHERE oid = defaclnamespace), defaclobjtype, (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(defaclacl) i))
          FROM pg_default_acl
UNION ALL SELECT format('comment %s %s', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description)
          FROM pg_description d
          WHERE d.objoid >= 16384 AND NOT (d.classoid = 'pg_class'::regclass
                                         AND d.objoid IN (SELECT oid FROM records))";

/// The newest migration applied (as the record table holds it) and the md5 of the schema facts,
/// in one round trip: one transaction whose search_path is empty, so that names are written in
/// full. The record table must exist.
fn applied_and_fingerprint(client: &mut Client) -> Result<(String, String)> {
    let sql = format!(
        "BEGIN; SET LOCAL search_path = ''; \
         SELECT ({APPLIED}), md5(coalesce(string_agg(fact, E'\\n' ORDER BY fact COLLATE \"C\"), '')) \
         FROM ({FACTS}) AS facts (fact); COMMIT"
    );
    let messages = client.simple_query(&sql).map_err(PgError::from).context("fingerprint the schema")?;
    let row = messages.iter().find_map(|message| match message {
        postgres::SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    });
    let value = |i| {
        row.and_then(|row| row.get(i)).map(str::to_owned).context("the fingerprint query returned nothing")
    };
    Ok((value(0)?, value(1)?))
}

/// Keeps the database's current fingerprint as what its migrations made. Not keeping it loses only
/// the cheap drift notes, so a failure is told, not returned.
pub fn keep(client: &mut Client) {
    if let Err(error) = record(client) {
        eprintln!("note: the schema fingerprint was not kept, so db-status cannot tell drift: {error:#}");
    }
}

/// The migrations applied when the fingerprint is taken, as the newest successful version: a
/// fingerprint kept at another version says nothing (another tool migrated since).
const APPLIED: &str = "SELECT coalesce(max(version), 0)::text FROM public._sqlx_migrations WHERE success";

/// Nothing to keep it on before a first migration made the record table.
fn record(client: &mut Client) -> Result<()> {
    let exists =
        client.query_one("SELECT pg_catalog.to_regclass('public._sqlx_migrations') IS NOT NULL", &[]);
    if !exists.map_err(PgError::from)?.get::<_, bool>(0) {
        return Ok(());
    }
    let (applied, fingerprint) = applied_and_fingerprint(client)?;
    client
        .batch_execute(&format!("COMMENT ON TABLE {RECORDS} IS '{PREFIX}{fingerprint} at {applied}'"))
        .map_err(PgError::from)
        .context("record the schema fingerprint")
}

/// Whether the schema differs from what its migrations made when this tool last migrated it;
/// `None` when unknown (no fingerprint kept, or migrations applied since by another tool).
pub fn drifted(client: &mut Client) -> Result<Option<bool>> {
    let row = client
        .query_one(
            "SELECT pg_catalog.obj_description(pg_catalog.to_regclass('public._sqlx_migrations'), 'pg_class')",
            &[],
        )
        .map_err(PgError::from)?;
    let comment: Option<String> = row.get(0);
    let Some((kept, at)) =
        comment.as_deref().and_then(|c| c.strip_prefix(PREFIX)).and_then(|c| c.split_once(" at "))
    else {
        return Ok(None);
    };
    let (applied, fingerprint) = applied_and_fingerprint(client)?;
    if applied != at {
        return Ok(None);
    }
    Ok(Some(fingerprint != kept))
}
