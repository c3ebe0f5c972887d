//! Reading a database's schema from the system catalogs into a [`Snapshot`].
//!
//! Every object is keyed by `pg_identify_object`'s type and identity (`table public.users`,
//! `table column public.users.email`), which are the same in any two databases holding the same
//! schema, and which `pg_depend` rows can be translated into. Definitions come from the server's
//! own deparsers (`pg_get_indexdef`, `pg_get_viewdef`, ...) under an empty search_path, so every
//! name in them is schema-qualified and the text can be replayed anywhere.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use postgres::Client;

use crate::conn::PgError;

/// What a database's schema is made of, and what depends on what.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub objects: BTreeMap<String, Object>,
    /// Object key to the keys it depends on (only keys in `objects`).
    pub deps: BTreeMap<String, BTreeSet<String>>,
    /// Objects this tool does not write SQL for (domains, rules, aggregates...), by key, each with
    /// a fingerprint of its definition where one is read (empty: known by name only, refused).
    pub unsupported: BTreeMap<String, String>,
    /// Objects that say no more than a part of another one (PostgreSQL 18's NOT NULL constraint
    /// of a column) and stand for it.
    pub implied: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Object {
    /// The object this one is part of, and is dropped with (a column's table, a comment's target).
    pub owner: Option<String>,
    /// On a partition or an inheriting table: its parent's object this one is the copy of (a
    /// column or CHECK it does not declare itself; on a partition also a key, an index, a foreign
    /// key, a trigger), which PostgreSQL makes and drops with that one.
    pub inherited_from: Option<String>,
    pub def: Def,
}

/// Object kinds, in the order statements of equal standing are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Schema,
    Extension,
    Collation,
    Enum,
    Sequence,
    Table,
    Column,
    Default,
    SequenceOwner,
    Constraint,
    Index,
    Partition,
    Inherits,
    ReplicaIdentity,
    View,
    MaterializedView,
    Function,
    Trigger,
    Policy,
    Grant,
    DefaultPrivileges,
    Comment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub data_type: String,
    pub collation: Option<String>,
    pub not_null: bool,
    /// `a` (ALWAYS) or `d` (BY DEFAULT) for identity columns.
    pub identity: Option<char>,
    /// The expression of a generated column.
    pub generated: Option<String>,
    /// A generated column computed when read (PostgreSQL 18's VIRTUAL), not stored.
    pub generated_virtual: bool,
    /// An identity column's sequence options.
    pub identity_options: Option<SequenceSpec>,
    /// Where they differ from the type's: STORAGE (the type's is `type_storage`), COMPRESSION; and
    /// a STATISTICS target.
    pub storage: Option<String>,
    pub type_storage: String,
    /// PostgreSQL 18's NOT NULL constraint name (`None` before 18), and whether it is the one
    /// PostgreSQL gives (`<table>_<column>_not_null`).
    pub not_null_name: Option<String>,
    pub not_null_name_is_default: bool,
    pub compression: Option<String>,
    pub statistics: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSpec {
    pub data_type: String,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cache: i64,
    pub cycle: bool,
}

/// An object's definition. Names are SQL-ready (quoted where needed, schema-qualified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Def {
    Schema {
        name: String,
    },
    Extension {
        name: String,
        schema: String,
        /// `extversion`, as CREATE EXTENSION ... VERSION and ALTER EXTENSION ... UPDATE TO take it.
        version: String,
    },
    /// `CREATE COLLATION`: `provider` is `icu`, `libc` or `builtin`.
    Collation {
        name: String,
        provider: String,
        locale: Option<String>,
        lc_collate: Option<String>,
        lc_ctype: Option<String>,
        deterministic: bool,
        rules: Option<String>,
    },
    Enum {
        name: String,
        labels: Vec<String>,
    },
    Sequence {
        name: String,
        spec: SequenceSpec,
    },
    /// `ALTER SEQUENCE .. OWNED BY table.column` (serial columns).
    SequenceOwner {
        sequence: String,
        column: String,
    },
    Table {
        name: String,
        unlogged: bool,
        row_security: bool,
        force_row_security: bool,
        /// A partitioned table's key, as in `RANGE (created_at)`.
        partition_by: Option<String>,
        /// Storage parameters (`fillfactor=70`), sorted.
        options: Vec<String>,
    },
    /// A table attached as a partition: `bound` is `FOR VALUES ...` or `DEFAULT`.
    Partition {
        table: String,
        parent: String,
        bound: String,
    },
    /// `ALTER TABLE table INHERIT parent` (table inheritance outside partitioning).
    Inherits {
        table: String,
        parent: String,
    },
    /// A table's REPLICA IDENTITY other than DEFAULT: `FULL`, `NOTHING` or `USING INDEX name`.
    ReplicaIdentity {
        table: String,
        setting: String,
    },
    Column {
        table: String,
        name: String,
        position: i16,
        spec: ColumnSpec,
    },
    Default {
        table: String,
        column: String,
        expression: String,
    },
    Constraint {
        table: String,
        name: String,
        definition: String,
    },
    Index {
        name: String,
        definition: String,
    },
    View {
        name: String,
        materialized: bool,
        options: Option<String>,
        query: String,
    },
    Function {
        signature: String,
        procedure: bool,
        definition: String,
        arguments: String,
        result: String,
    },
    /// `enabled`: pg_trigger.tgenabled (`O` on, `D` disabled, `R` replica, `A` always).
    Trigger {
        table: String,
        name: String,
        definition: String,
        enabled: String,
    },
    /// `command` is ALL, SELECT, INSERT, UPDATE or DELETE; `roles` SQL-ready, PUBLIC included.
    Policy {
        table: String,
        name: String,
        permissive: bool,
        command: String,
        roles: Vec<String>,
        using: Option<String>,
        check: Option<String>,
    },
    /// What `grantee` (SQL-ready, or PUBLIC) holds on `target` (as in `TABLE public.t`, or
    /// `SCHEMA s`; with `column`, on that column) where it is not what PostgreSQL gives it by
    /// `default` (EXECUTE on a function to PUBLIC): privileges as `aclexplode` names them, sorted,
    /// and those of them held WITH GRANT OPTION.
    Grant {
        target: String,
        column: Option<String>,
        grantee: String,
        privileges: Vec<String>,
        grantable: Vec<String>,
        default: Vec<String>,
    },
    /// `ALTER DEFAULT PRIVILEGES`: `for_role` None for the role the migrations run as; `schema`
    /// None for all schemas; `on` TABLES, SEQUENCES, FUNCTIONS, TYPES or SCHEMAS. `revoke` says
    /// the privileges are taken away from PostgreSQL's default rather than given.
    DefaultPrivileges {
        for_role: Option<String>,
        schema: Option<String>,
        on: String,
        grantee: String,
        privileges: Vec<String>,
        grantable: Vec<String>,
        revoke: bool,
    },
    /// `COMMENT ON <target> IS <text>`; target as in `TABLE public.users`.
    Comment {
        target: String,
        text: String,
    },
}

impl Def {
    pub fn kind(&self) -> Kind {
        match self {
            Def::Schema { .. } => Kind::Schema,
            Def::Extension { .. } => Kind::Extension,
            Def::Collation { .. } => Kind::Collation,
            Def::Enum { .. } => Kind::Enum,
            Def::Sequence { .. } => Kind::Sequence,
            Def::SequenceOwner { .. } => Kind::SequenceOwner,
            Def::Table { .. } => Kind::Table,
            Def::Partition { .. } => Kind::Partition,
            Def::Inherits { .. } => Kind::Inherits,
            Def::ReplicaIdentity { .. } => Kind::ReplicaIdentity,
            Def::Policy { .. } => Kind::Policy,
            Def::Grant { .. } => Kind::Grant,
            Def::DefaultPrivileges { .. } => Kind::DefaultPrivileges,
            Def::Column { .. } => Kind::Column,
            Def::Default { .. } => Kind::Default,
            Def::Constraint { .. } => Kind::Constraint,
            Def::Index { .. } => Kind::Index,
            Def::View { materialized: false, .. } => Kind::View,
            Def::View { materialized: true, .. } => Kind::MaterializedView,
            Def::Function { .. } => Kind::Function,
            Def::Trigger { .. } => Kind::Trigger,
            Def::Comment { .. } => Kind::Comment,
        }
    }

    /// Equal as schema: a column's position is not part of it (columns cannot be reordered).
    pub fn same_as(&self, other: &Def) -> bool {
        match (self, other) {
            (
                Def::Column { table: t1, name: n1, spec: s1, .. },
                Def::Column { table: t2, name: n2, spec: s2, .. },
            ) => t1 == t2 && n1 == n2 && s1 == s2,
            _ => self == other,
        }
    }
}

/// The relations this tool looks at: user schemas only, not extension members, not the records of
/// migrations (sqlx's table) and seeds (this tool's).
const RELATIONS: &str = "WITH rel AS (
    SELECT c.oid, c.relname, c.relkind, c.relpersistence, c.reloptions, n.nspname,
           c.relrowsecurity, c.relforcerowsecurity, c.relispartition, c.relreplident,
           format('%I.%I', n.nspname, c.relname) AS sql_name,
           (SELECT o.type || ' ' || o.identity FROM pg_identify_object('pg_class'::regclass, c.oid, 0) o) AS key
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
      AND NOT EXISTS (SELECT 1 FROM pg_depend e
                      WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')
      AND NOT (n.nspname = 'public' AND c.relname IN ('_sqlx_migrations', '_xtask_seeds')))
";

/// A user namespace that is not an extension member, as a condition on `n` and an object `objid`
/// of catalog `catalog`.
fn user_object(catalog: &str, oid: &str) -> String {
    format!(
        "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' \
         AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass \
         AND e.objid = {oid} AND e.deptype = 'e')"
    )
}

/// SQL for an object's key (`type identity`), from the name of its catalog.
fn key_of(catalog: &str, oid: &str, sub: &str) -> String {
    identity_key(&format!("'{catalog}'::regclass"), oid, sub)
}

/// SQL for an object's key from an expression giving its catalog's oid.
fn identity_key(class: &str, id: &str, sub: &str) -> String {
    format!("(SELECT o.type || ' ' || o.identity FROM pg_identify_object({class}, {id}, {sub}) o)")
}

/// Reads the whole schema of the database `client` is connected to.
pub fn introspect(client: &mut Client) -> Result<Snapshot> {
    client.batch_execute("SET search_path = ''").map_err(PgError::from)?;
    let mut snapshot = Snapshot::default();
    schemas(client, &mut snapshot)?;
    extensions(client, &mut snapshot)?;
    collations(client, &mut snapshot)?;
    types(client, &mut snapshot)?;
    policies(client, &mut snapshot)?;
    rules(client, &mut snapshot)?;
    others(client, &mut snapshot)?;
    sequences(client, &mut snapshot)?;
    tables(client, &mut snapshot)?;
    columns(client, &mut snapshot)?;
    identity_options(client, &mut snapshot)?;
    constraints(client, &mut snapshot)?;
    indexes(client, &mut snapshot)?;
    views(client, &mut snapshot)?;
    functions(client, &mut snapshot)?;
    triggers(client, &mut snapshot)?;
    grants(client, &mut snapshot)?;
    default_privileges(client, &mut snapshot)?;
    comments(client, &mut snapshot)?;
    dependencies(client, &mut snapshot)?;
    client.batch_execute("RESET search_path").map_err(PgError::from)?;
    Ok(snapshot)
}

fn query(client: &mut Client, what: &str, sql: &str) -> Result<Vec<postgres::Row>> {
    client
        .query(sql, &[])
        .map_err(PgError::from)
        .with_context(|| format!("read the {what} from the catalogs"))
}

fn add(snapshot: &mut Snapshot, key: String, owner: Option<String>, def: Def) {
    add_copy(snapshot, key, owner, None, def);
}

/// Adds an object that may be a partition's copy of its parent's object `inherited_from`.
fn add_copy(
    snapshot: &mut Snapshot,
    key: String,
    owner: Option<String>,
    inherited_from: Option<String>,
    def: Def,
) {
    snapshot.objects.insert(key, Object { owner, inherited_from, def });
}

fn schemas(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "SELECT {}, format('%I', n.nspname) FROM pg_namespace n \
         WHERE n.nspname <> 'public' AND {}",
        key_of("pg_namespace", "n.oid", "0"),
        user_object("pg_namespace", "n.oid")
    );
    for row in query(client, "schemas", &sql)? {
        add(snapshot, row.get(0), None, Def::Schema { name: row.get(1) });
    }
    Ok(())
}

fn extensions(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "SELECT {}, format('%I', x.extname), format('%I', n.nspname), x.extversion \
         FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace WHERE x.extname <> 'plpgsql'",
        key_of("pg_extension", "x.oid", "0")
    );
    for row in query(client, "extensions", &sql)? {
        let def = Def::Extension { name: row.get(1), schema: row.get(2), version: row.get(3) };
        add(snapshot, row.get(0), None, def);
    }
    Ok(())
}

/// Enums are modelled; other user-made types (domains, ranges, composite types) are noted.
fn types(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "SELECT {}, format('%I.%I', n.nspname, t.typname), t.typtype::text, \
                array(SELECT l.enumlabel::text FROM pg_enum l WHERE l.enumtypid = t.oid ORDER BY l.enumsortorder), \
                CASE t.typtype \
                WHEN 'd' THEN concat_ws(' | ', format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault, \
                    (SELECT string_agg(pg_get_constraintdef(c.oid), ', ' ORDER BY c.conname) \
                     FROM pg_constraint c WHERE c.contypid = t.oid)) \
                WHEN 'c' THEN (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' \
                               ORDER BY a.attnum) FROM pg_attribute a \
                               WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) \
                WHEN 'r' THEN (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid) \
                END \
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
         WHERE {} AND t.typtype IN ('e', 'd', 'r', 'c') \
           AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')",
        key_of("pg_type", "t.oid", "0"),
        user_object("pg_type", "t.oid")
    );
    for row in query(client, "types", &sql)? {
        let key: String = row.get(0);
        if row.get::<_, String>(2) == "e" {
            add(snapshot, key, None, Def::Enum { name: row.get(1), labels: row.get(3) });
        } else {
            // An empty composite type has no columns to list.
            snapshot.unsupported.insert(key, row.get::<_, Option<String>>(4).unwrap_or_default());
        }
    }
    Ok(())
}

/// Collations a user made; the version recorded with one is the library's, not the schema's.
fn collations(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    // Through jsonb: the locale column is `colliculocale` in 15 and 16, `colllocale` from 17 on;
    // before 15 an ICU collation's locale is its `collcollate`.
    let sql = format!(
        "SELECT {}, format('%I.%I', n.nspname, co.collname), \
                CASE co.collprovider WHEN 'i' THEN 'icu' WHEN 'b' THEN 'builtin' ELSE 'libc' END, \
                coalesce(to_jsonb(co) ->> 'colllocale', to_jsonb(co) ->> 'colliculocale', \
                         CASE WHEN co.collprovider <> 'c' AND NOT to_jsonb(co) ? 'colliculocale' THEN co.collcollate END), \
                co.collcollate, co.collctype, co.collisdeterministic, to_jsonb(co) ->> 'collicurules' \
         FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace WHERE {}",
        key_of("pg_collation", "co.oid", "0"),
        user_object("pg_collation", "co.oid")
    );
    for row in query(client, "collations", &sql)? {
        let provider: String = row.get(2);
        let libc = provider == "libc";
        let def = Def::Collation {
            name: row.get(1),
            locale: if libc { None } else { row.get(3) },
            lc_collate: if libc { row.get(4) } else { None },
            lc_ctype: if libc { row.get(5) } else { None },
            provider,
            deterministic: row.get(6),
            rules: row.get(7),
        };
        add(snapshot, row.get(0), None, def);
    }
    Ok(())
}

fn policies(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "{RELATIONS}SELECT {}, rel.key, rel.sql_name, format('%I', p.polname), p.polpermissive, \
                CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' \
                              WHEN 'd' THEN 'DELETE' ELSE 'ALL' END, \
                array(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE r::regrole::text END \
                      FROM unnest(p.polroles) r ORDER BY 1), \
                pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid) \
         FROM rel JOIN pg_policy p ON p.polrelid = rel.oid",
        key_of("pg_policy", "p.oid", "0")
    );
    for row in query(client, "policies", &sql)? {
        let def = Def::Policy {
            table: row.get(2),
            name: row.get(3),
            permissive: row.get(4),
            command: row.get(5),
            roles: row.get(6),
            using: row.get(7),
            check: row.get(8),
        };
        add(snapshot, row.get(0), Some(row.get(1)), def);
    }
    Ok(())
}

/// Rewrite rules: not written, but compared by definition.
fn rules(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "{RELATIONS}SELECT {}, pg_get_ruledef(w.oid) FROM rel JOIN pg_rewrite w ON w.ev_class = rel.oid \
         WHERE w.rulename <> '_RETURN'",
        key_of("pg_rewrite", "w.oid", "0")
    );
    for row in query(client, "rules", &sql)? {
        snapshot.unsupported.insert(row.get(0), row.get(1));
    }
    Ok(())
}

/// The kinds this tool writes no SQL for but reads the definition of, so that a difference in them
/// is seen: aggregates, operators, casts, statistics objects, operator classes and families, text
/// search configurations and dictionaries, event triggers, publications, foreign servers and
/// foreign tables. (Any other kind is known by name only, and refused.)
fn others(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let mine = |catalog: &str, oid: &str| {
        format!(
            "{oid} >= 16384 AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass \
             AND e.objid = {oid} AND e.deptype = 'e')"
        )
    };
    let sources = [
        (
            "pg_proc",
            "p.oid",
            "concat_ws(' | ', pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), a.aggkind, \
                       a.aggnumdirectargs, a.aggtransfn::regprocedure, a.aggfinalfn::regprocedure, \
                       a.aggcombinefn::regprocedure, a.aggserialfn::regprocedure, a.aggdeserialfn::regprocedure, \
                       a.aggmtransfn::regprocedure, a.aggminvtransfn::regprocedure, a.aggmfinalfn::regprocedure, \
                       a.aggfinalextra, a.aggmfinalextra, a.aggsortop::regoperator, format_type(a.aggtranstype, NULL), \
                       a.aggtransspace, format_type(a.aggmtranstype, NULL), a.aggmtransspace, a.agginitval, \
                       a.aggminitval, p.proparallel) \
             FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid",
        ),
        (
            "pg_proc",
            "p.oid",
            "concat_ws(' | ', pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), p.prosrc, p.probin) \
             FROM pg_proc p WHERE p.prokind = 'w'",
        ),
        (
            "pg_operator",
            "o.oid",
            "concat_ws(' | ', o.oprkind, format_type(o.oprleft, NULL), format_type(o.oprright, NULL), \
                       format_type(o.oprresult, NULL), o.oprcode::regprocedure, o.oprcom::regoperator, \
                       o.oprnegate::regoperator, o.oprrest::regprocedure, o.oprjoin::regprocedure, o.oprcanmerge, \
                       o.oprcanhash) FROM pg_operator o",
        ),
        (
            "pg_cast",
            "c.oid",
            "concat_ws(' | ', c.castfunc::regprocedure, c.castcontext, c.castmethod) FROM pg_cast c",
        ),
        (
            "pg_statistic_ext",
            "s.oid",
            "concat_ws(' | ', pg_get_statisticsobjdef(s.oid), to_jsonb(s) ->> 'stxstattarget') FROM pg_statistic_ext s",
        ),
        (
            "pg_opclass",
            "c.oid",
            "concat_ws(' | ', (SELECT amname FROM pg_am WHERE oid = c.opcmethod), format_type(c.opcintype, NULL), \
                       c.opcdefault, format_type(c.opckeytype, NULL), \
                       (SELECT o.identity FROM pg_identify_object('pg_opfamily'::regclass, c.opcfamily, 0) o)) \
             FROM pg_opclass c",
        ),
        (
            "pg_opfamily",
            "f.oid",
            "concat_ws(' | ', (SELECT amname FROM pg_am WHERE oid = f.opfmethod), \
                       (SELECT string_agg(format('%s %s %s %s', amopstrategy, amopopr::regoperator, amoppurpose, \
                                                 amopsortfamily), ', ' ORDER BY 1) FROM pg_amop WHERE amopfamily = f.oid), \
                       (SELECT string_agg(format('%s %s %s %s', amprocnum, amproc::regprocedure, \
                                                 format_type(amproclefttype, NULL), format_type(amprocrighttype, NULL)), \
                                          ', ' ORDER BY 1) FROM pg_amproc WHERE amprocfamily = f.oid)) \
             FROM pg_opfamily f",
        ),
        (
            "pg_ts_config",
            "c.oid",
            "concat_ws(' | ', (SELECT prsname FROM pg_ts_parser WHERE oid = c.cfgparser), \
                       (SELECT string_agg(format('%s %s %s', maptokentype, mapseqno, mapdict::regdictionary), ', ' \
                                          ORDER BY maptokentype, mapseqno) FROM pg_ts_config_map WHERE mapcfg = c.oid)) \
             FROM pg_ts_config c",
        ),
        (
            "pg_ts_dict",
            "d.oid",
            "concat_ws(' | ', (SELECT tmplname FROM pg_ts_template WHERE oid = d.dicttemplate), d.dictinitoption) \
             FROM pg_ts_dict d",
        ),
        (
            "pg_event_trigger",
            "t.oid",
            "concat_ws(' | ', t.evtevent, t.evtfoid::regprocedure, t.evtenabled, t.evttags) FROM pg_event_trigger t",
        ),
        (
            "pg_publication",
            "p.oid",
            "concat_ws(' | ', to_jsonb(p) - 'oid' - 'pubowner', \
                       (SELECT string_agg(prrelid::regclass::text, ', ' ORDER BY 1) FROM pg_publication_rel \
                        WHERE prpubid = p.oid)) FROM pg_publication p",
        ),
        (
            "pg_foreign_server",
            "s.oid",
            "concat_ws(' | ', (SELECT fdwname FROM pg_foreign_data_wrapper WHERE oid = s.srvfdw), s.srvtype, \
                       s.srvversion, s.srvoptions) FROM pg_foreign_server s",
        ),
        (
            "pg_class",
            "c.oid",
            "concat_ws(' | ', (SELECT srvname FROM pg_foreign_server WHERE oid = f.ftserver), f.ftoptions, \
                       (SELECT string_agg(format('%s %s %s', attname, format_type(atttypid, atttypmod), attfdwoptions), \
                                          ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 \
                                          AND NOT attisdropped)) \
             FROM pg_class c JOIN pg_foreign_table f ON f.ftrelid = c.oid",
        ),
    ];
    for (catalog, oid, rest) in sources {
        // The definition, then the FROM clause (the last FROM: the definitions hold subqueries).
        let (definition, from) = rest.rsplit_once(" FROM ").unwrap_or((rest, ""));
        let joiner = if from.contains(" WHERE ") { " AND " } else { " WHERE " };
        let sql = format!(
            "SELECT {}, {definition} FROM {from}{joiner}{}",
            key_of(catalog, oid, "0"),
            mine(catalog, oid)
        );
        for row in query(client, "definitions of other kinds", &sql)? {
            snapshot.unsupported.insert(row.get(0), row.get::<_, Option<String>>(1).unwrap_or_default());
        }
    }
    Ok(())
}

/// Sequences a user made (identity columns' own sequences are part of their column).
fn sequences(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "{RELATIONS}SELECT rel.key, rel.sql_name, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, \
                s.seqmin, s.seqmax, s.seqcache, s.seqcycle, \
                (SELECT o.identity FROM pg_identify_object(d.refclassid, d.refobjid, d.refobjsubid) o), \
                {} \
         FROM rel JOIN pg_sequence s ON s.seqrelid = rel.oid \
         LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = rel.oid AND d.deptype = 'a' \
              AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 \
         WHERE NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_class'::regclass \
                           AND i.objid = rel.oid AND i.deptype = 'i')",
        key_of("pg_class", "d.refobjid", "d.refobjsubid")
    );
    for row in query(client, "sequences", &sql)? {
        let key: String = row.get(0);
        let name: String = row.get(1);
        let spec = SequenceSpec {
            data_type: row.get(2),
            start: row.get(3),
            increment: row.get(4),
            min: row.get(5),
            max: row.get(6),
            cache: row.get(7),
            cycle: row.get(8),
        };
        if let (Some(column), Some(column_key)) = (row.get::<_, Option<String>>(9), row.get(10)) {
            let def = Def::SequenceOwner { sequence: name.clone(), column };
            // Made after both the sequence and the column (a dependency on a column this tool
            // does not model is dropped with the others at the end).
            let owned_by = format!("owned by {key}");
            add(snapshot, owned_by.clone(), None, def);
            snapshot.deps.entry(owned_by).or_default().extend([column_key, key.clone()]);
        }
        add(snapshot, key, None, Def::Sequence { name, spec });
    }
    Ok(())
}

/// The parent of a partition `rel`, as `pg_inherits` row `i` joined to its class `pc`.
const PARENT: &str = "FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent \
     JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = rel.oid";

fn tables(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    // Inheritance outside partitioning: a regular table with children, or a child that is not
    // a partition.
    let parent_key = format!("SELECT {} {PARENT}", key_of("pg_class", "i.inhparent", "0"));
    let sql = format!(
        "{RELATIONS}SELECT rel.key, rel.sql_name, rel.relpersistence = 'u', \
                array(SELECT format('%I.%I', pn.nspname, pc.relname) {PARENT} AND NOT rel.relispartition \
                      ORDER BY i.inhseqno), \
                rel.relrowsecurity, rel.relforcerowsecurity, \
                CASE WHEN rel.relkind = 'p' THEN pg_get_partkeydef(rel.oid) END, \
                CASE WHEN rel.relispartition THEN (SELECT format('%I.%I', pn.nspname, pc.relname) {PARENT}) END, \
                CASE WHEN rel.relispartition THEN ({parent_key}) END, \
                pg_get_expr((SELECT relpartbound FROM pg_class WHERE oid = rel.oid), rel.oid), \
                rel.relreplident::text, array(SELECT unnest(rel.reloptions) ORDER BY 1), \
                (SELECT format('USING INDEX %I', ic.relname) FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid \
                 WHERE x.indrelid = rel.oid AND x.indisreplident), \
                (SELECT coalesce((SELECT {} FROM pg_constraint co WHERE co.conindid = x.indexrelid \
                                  AND co.conrelid = x.indrelid AND co.contype IN ('p', 'u', 'x')), {}) \
                 FROM pg_index x WHERE x.indrelid = rel.oid AND x.indisreplident), \
                array(SELECT {} {PARENT} AND NOT rel.relispartition ORDER BY i.inhseqno) \
         FROM rel WHERE rel.relkind IN ('r', 'p')",
        key_of("pg_constraint", "co.oid", "0"),
        key_of("pg_class", "x.indexrelid", "0"),
        key_of("pg_class", "i.inhparent", "0")
    );
    for row in query(client, "tables", &sql)? {
        let key: String = row.get(0);
        let name: String = row.get(1);
        // The parents a table inherits from (not partitioning): names and keys, in the same order.
        let parents: Vec<String> = row.get(3);
        for (parent, parent_key) in parents.into_iter().zip(row.get::<_, Vec<String>>(14)) {
            let inherits = format!("inheritance of {key} from {parent_key}");
            add(snapshot, inherits.clone(), Some(key.clone()), Def::Inherits { table: name.clone(), parent });
            snapshot.deps.entry(inherits).or_default().insert(parent_key);
        }
        let parent_key: Option<String> = row.get(8);
        if let (Some(parent), Some(parent_key), Some(bound)) = (row.get(7), &parent_key, row.get(9)) {
            let partition = format!("partition of {key}");
            add(
                snapshot,
                partition.clone(),
                Some(key.clone()),
                Def::Partition { table: name.clone(), parent, bound },
            );
            snapshot.deps.entry(partition).or_default().insert(parent_key.clone());
        }
        let setting = match row.get::<_, String>(10).as_str() {
            "f" => Some("FULL".to_owned()),
            "n" => Some("NOTHING".to_owned()),
            "i" => row.get(12),
            _ => None,
        };
        if let Some(setting) = setting {
            let replica = format!("replica identity of {key}");
            if let Some(index) = row.get::<_, Option<String>>(13) {
                snapshot.deps.entry(replica.clone()).or_default().insert(index);
            }
            add(snapshot, replica, Some(key.clone()), Def::ReplicaIdentity { table: name.clone(), setting });
        }
        let def = Def::Table {
            name,
            unlogged: row.get(2),
            row_security: row.get(4),
            force_row_security: row.get(5),
            partition_by: row.get(6),
            options: row.get(11),
        };
        add_copy(snapshot, key, None, parent_key, def);
    }
    Ok(())
}

fn columns(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let storage = |column: &str| {
        format!(
            "CASE {column} WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL' WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END"
        )
    };
    let (storage_a, storage_t) = (storage("a.attstorage"), storage("t.typstorage"));
    let sql = format!(
        "{RELATIONS}SELECT {}, rel.key, rel.sql_name, format('%I', a.attname), a.attnum, \
                format_type(a.atttypid, a.atttypmod), \
                CASE WHEN a.attcollation <> t.typcollation THEN \
                    (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co \
                     JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END, \
                a.attnotnull, a.attidentity::text, a.attgenerated::text, \
                pg_get_expr(ad.adbin, ad.adrelid), {}, \
                CASE WHEN a.attstorage <> t.typstorage THEN {storage_a} END, \
                CASE a.attcompression WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' END, \
                nullif(a.attstattarget, -1)::int, {storage_t}, \
                CASE WHEN a.attinhcount > 0 AND NOT a.attislocal THEN \
                    (SELECT {} FROM pg_inherits i JOIN pg_attribute pa ON pa.attrelid = i.inhparent \
                     WHERE i.inhrelid = rel.oid AND pa.attname = a.attname ORDER BY i.inhseqno LIMIT 1) END \
         FROM rel JOIN pg_attribute a ON a.attrelid = rel.oid JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum \
         WHERE rel.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped",
        key_of("pg_class", "rel.oid", "a.attnum"),
        key_of("pg_attrdef", "ad.oid", "0"),
        key_of("pg_class", "i.inhparent", "pa.attnum")
    );
    for row in query(client, "columns", &sql)? {
        let key: String = row.get(0);
        let table: String = row.get(2);
        let name: String = row.get(3);
        let identity: String = row.get(8);
        let generated: String = row.get(9);
        let expression: Option<String> = row.get(10);
        let spec = ColumnSpec {
            data_type: row.get(5),
            collation: row.get(6),
            not_null: row.get(7),
            identity: identity.chars().next(),
            generated: if generated.is_empty() { None } else { expression.clone() },
            generated_virtual: generated == "v",
            identity_options: None,
            storage: row.get(12),
            compression: row.get(13),
            statistics: row.get(14),
            type_storage: row.get(15),
            not_null_name: None,
            not_null_name_is_default: true,
        };
        if !generated.is_empty() {
            // The expression of a generated column is part of the column.
            if let Some(attrdef) = row.get::<_, Option<String>>(11) {
                snapshot.implied.insert(attrdef);
            }
        }
        if let (Some(expression), true) = (expression, generated.is_empty()) {
            let def = Def::Default { table: table.clone(), column: name.clone(), expression };
            add(snapshot, row.get(11), Some(key.clone()), def);
        }
        let def = Def::Column { table, name, position: row.get(4), spec };
        add_copy(snapshot, key, Some(row.get(1)), row.get(16), def);
    }
    Ok(())
}

/// Each identity column's own sequence, read into the column.
fn identity_options(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "SELECT {}, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, \
                s.seqcache, s.seqcycle \
         FROM pg_sequence s JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid \
              AND d.deptype = 'i' AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0",
        key_of("pg_class", "d.refobjid", "d.refobjsubid")
    );
    for row in query(client, "identity sequences", &sql)? {
        let Some(Object { def: Def::Column { spec, .. }, .. }) =
            snapshot.objects.get_mut(&row.get::<_, String>(0))
        else {
            continue;
        };
        spec.identity_options = Some(SequenceSpec {
            data_type: row.get(1),
            start: row.get(2),
            increment: row.get(3),
            min: row.get(4),
            max: row.get(5),
            cache: row.get(6),
            cycle: row.get(7),
        });
    }
    Ok(())
}

/// From PostgreSQL 18 on, each NOT NULL column has a constraint in pg_constraint too. One that is
/// validated and inherited says no more than the column's NOT NULL and the constraint's name, which
/// the column keeps (a partition's are named after its parent's).
const PLAIN_NOT_NULL: &str = "(co.contype = 'n' AND co.convalidated AND NOT co.connoinherit)";

fn constraints(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "{RELATIONS}SELECT {}, rel.key, rel.sql_name, format('%I', co.conname), pg_get_constraintdef(co.oid), \
                {PLAIN_NOT_NULL}, CASE WHEN co.contype = 'n' THEN {} END, \
                co.conname = (SELECT format('%s_%s_not_null', c.relname, a.attname) FROM pg_class c \
                              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = co.conkey[1] \
                              WHERE c.oid = co.conrelid), \
                CASE WHEN co.coninhcount > 0 AND NOT co.conislocal THEN coalesce( \
                    (SELECT {} WHERE co.conparentid <> 0), \
                    (SELECT {} FROM pg_inherits i JOIN pg_constraint pco ON pco.conrelid = i.inhparent \
                     WHERE i.inhrelid = rel.oid AND pco.conname = co.conname ORDER BY i.inhseqno LIMIT 1)) END \
         FROM rel JOIN pg_constraint co ON co.conrelid = rel.oid \
         WHERE rel.relkind IN ('r', 'p') AND co.contype <> 't'",
        key_of("pg_constraint", "co.oid", "0"),
        key_of("pg_class", "co.conrelid", "co.conkey[1]"),
        key_of("pg_constraint", "co.conparentid", "0"),
        key_of("pg_constraint", "pco.oid", "0")
    );
    for row in query(client, "constraints", &sql)? {
        if row.get::<_, bool>(5) {
            snapshot.implied.insert(row.get(0));
            let column = row.get::<_, Option<String>>(6).and_then(|key| snapshot.objects.get_mut(&key));
            if let Some(Object { def: Def::Column { spec, .. }, .. }) = column {
                spec.not_null_name = Some(row.get(3));
                spec.not_null_name_is_default = row.get(7);
            }
            continue;
        }
        let def = Def::Constraint { table: row.get(2), name: row.get(3), definition: row.get(4) };
        add_copy(snapshot, row.get(0), Some(row.get(1)), row.get(8), def);
    }
    Ok(())
}

/// Indexes of their own; those behind a constraint come with it.
fn indexes(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "{RELATIONS}SELECT rel.key, rel.sql_name, {}, pg_get_indexdef(rel.oid), \
                CASE WHEN rel.relispartition THEN \
                    (SELECT {} FROM pg_inherits h WHERE h.inhrelid = rel.oid) END \
         FROM rel JOIN pg_index i ON i.indexrelid = rel.oid \
         WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                           AND d.objid = rel.oid AND d.deptype = 'i')",
        key_of("pg_class", "i.indrelid", "0"),
        key_of("pg_class", "h.inhparent", "0")
    );
    for row in query(client, "indexes", &sql)? {
        let def = Def::Index { name: row.get(1), definition: row.get(3) };
        add_copy(snapshot, row.get(0), Some(row.get(2)), row.get(4), def);
    }
    Ok(())
}

fn views(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "{RELATIONS}SELECT rel.key, rel.sql_name, rel.relkind = 'm', array_to_string(rel.reloptions, ', '), \
                pg_get_viewdef(rel.oid, true) \
         FROM rel WHERE rel.relkind IN ('v', 'm')"
    );
    for row in query(client, "views", &sql)? {
        let query_text: String = row.get(4);
        let def = Def::View {
            name: row.get(1),
            materialized: row.get(2),
            options: row.get::<_, Option<String>>(3).filter(|o| !o.is_empty()),
            query: query_text.trim().trim_end_matches(';').to_owned(),
        };
        add(snapshot, row.get(0), None, def);
    }
    Ok(())
}

/// Functions and procedures; aggregates and window functions are noted as not modelled.
fn functions(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "SELECT {}, (SELECT o.identity FROM pg_identify_object('pg_proc'::regclass, p.oid, 0) o), \
                p.prokind::text, \
                CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END, \
                pg_get_function_arguments(p.oid), coalesce(pg_get_function_result(p.oid), '') \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {}",
        key_of("pg_proc", "p.oid", "0"),
        user_object("pg_proc", "p.oid")
    );
    for row in query(client, "functions", &sql)? {
        let key: String = row.get(0);
        let kind: String = row.get(2);
        // Aggregates and window functions are read with the other kinds.
        let Some(definition) = row.get::<_, Option<String>>(3) else { continue };
        let def = Def::Function {
            signature: row.get(1),
            procedure: kind == "p",
            definition: definition.trim_end().to_owned(),
            arguments: row.get(4),
            result: row.get(5),
        };
        add(snapshot, key, None, def);
    }
    Ok(())
}

/// Triggers a user made, and their copies on partitions (internal before PostgreSQL 15; the
/// triggers behind foreign keys are not).
fn triggers(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = format!(
        "{RELATIONS}SELECT {}, rel.key, rel.sql_name, format('%I', t.tgname), pg_get_triggerdef(t.oid), \
                t.tgenabled::text, CASE WHEN t.tgparentid <> 0 THEN {} END \
         FROM rel JOIN pg_trigger t ON t.tgrelid = rel.oid WHERE NOT t.tgisinternal OR (t.tgparentid <> 0 AND t.tgconstraint = 0)",
        key_of("pg_trigger", "t.oid", "0"),
        key_of("pg_trigger", "t.tgparentid", "0")
    );
    for row in query(client, "triggers", &sql)? {
        let def =
            Def::Trigger { table: row.get(2), name: row.get(3), definition: row.get(4), enabled: row.get(5) };
        add_copy(snapshot, row.get(0), Some(row.get(1)), row.get(6), def);
    }
    Ok(())
}

/// Privileges on the objects read above (and the public schema) that differ, for a grantee other
/// than the object's owner, from what PostgreSQL gives by default: one object per object and grantee.
fn grants(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let default = |kind: &str, owner: &str| format!("acldefault('{kind}', {owner})");
    let sources = [
        format!(
            "{RELATIONS}SELECT rel.key, CASE WHEN rel.relkind = 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || rel.sql_name, \
                    NULL::text, c.relowner, coalesce(c.relacl, d.acl), d.acl \
             FROM rel JOIN pg_class c ON c.oid = rel.oid, \
             LATERAL (SELECT CASE WHEN rel.relkind = 'S' THEN {} ELSE {} END AS acl) d \
             WHERE rel.relkind IN ('r', 'p', 'v', 'm', 'S')",
            default("s", "c.relowner"),
            default("r", "c.relowner")
        ),
        format!(
            "{RELATIONS}SELECT {}, 'TABLE ' || rel.sql_name, format('%I', at.attname), c.relowner, at.attacl, NULL::aclitem[] \
             FROM rel JOIN pg_class c ON c.oid = rel.oid JOIN pg_attribute at ON at.attrelid = rel.oid \
             WHERE at.attacl IS NOT NULL AND at.attnum > 0 AND NOT at.attisdropped",
            key_of("pg_class", "rel.oid", "at.attnum")
        ),
        format!(
            "SELECT {}, 'SCHEMA ' || format('%I', n.nspname), NULL, n.nspowner, coalesce(n.nspacl, {}), {} \
             FROM pg_namespace n WHERE {}",
            key_of("pg_namespace", "n.oid", "0"),
            default("n", "n.nspowner"),
            default("n", "n.nspowner"),
            user_object("pg_namespace", "n.oid")
        ),
        format!(
            "SELECT {}, CASE p.prokind WHEN 'p' THEN 'PROCEDURE ' ELSE 'FUNCTION ' END \
                    || (SELECT o.identity FROM pg_identify_object('pg_proc'::regclass, p.oid, 0) o), \
                    NULL, p.proowner, coalesce(p.proacl, {}), {} \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {}",
            key_of("pg_proc", "p.oid", "0"),
            default("f", "p.proowner"),
            default("f", "p.proowner"),
            user_object("pg_proc", "p.oid")
        ),
        format!(
            "SELECT {}, 'TYPE ' || format('%I.%I', n.nspname, t.typname), NULL, t.typowner, \
                    coalesce(t.typacl, {}), {} \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
             WHERE t.typtype IN ('e', 'd') AND {}",
            key_of("pg_type", "t.oid", "0"),
            default("T", "t.typowner"),
            default("T", "t.typowner"),
            user_object("pg_type", "t.oid")
        ),
    ];
    let privileges = |acl: &str, grantable: bool| {
        format!(
            "coalesce((SELECT array_agg(p.privilege_type::text ORDER BY p.privilege_type) FROM aclexplode({acl}) p \
                       WHERE p.grantee = g.grantee{}), '{{}}')",
            if grantable { " AND p.is_grantable" } else { "" }
        )
    };
    for source in sources {
        // A source's columns: key, target, column, owner, acl, default acl.
        let (select, with) = match source.strip_prefix(RELATIONS) {
            Some(rest) => (rest.to_owned(), RELATIONS.to_owned() + ", "),
            None => (source, "WITH ".to_owned()),
        };
        let sql = format!(
            "{with}x (key, target, col, owner, acl, dflt) AS ({select}) \
             SELECT x.key, x.target, x.col, CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END, \
                    {}, {}, {} \
             FROM x, LATERAL (SELECT grantee FROM aclexplode(x.acl) UNION SELECT grantee FROM aclexplode(x.dflt)) g \
             WHERE g.grantee <> x.owner",
            privileges("x.acl", false),
            privileges("x.acl", true),
            privileges("x.dflt", false)
        );
        for row in query(client, "privileges", &sql)? {
            let object: String = row.get(0);
            let (privileges, grantable, default): (Vec<String>, Vec<String>, Vec<String>) =
                (row.get(4), row.get(5), row.get(6));
            let known = snapshot.objects.contains_key(&object) || object == "schema public";
            if !known || (privileges == default && grantable.is_empty()) {
                continue;
            }
            let grantee: String = row.get(3);
            let def = Def::Grant {
                target: row.get(1),
                column: row.get(2),
                grantee: grantee.clone(),
                privileges,
                grantable,
                default,
            };
            add(snapshot, format!("grant on {object} to {grantee}"), Some(object), def);
        }
    }
    Ok(())
}

/// `ALTER DEFAULT PRIVILEGES`, one object per role, schema, kind and grantee. Those of the role
/// reading (the one the migrations run as) say no FOR ROLE; those for all schemas are what they
/// add to or take from PostgreSQL's default.
fn default_privileges(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = "WITH d AS (SELECT d.oid, d.defaclrole, d.defaclnamespace, d.defaclobjtype, \
                   CASE WHEN d.defaclnamespace = 0 THEN acldefault(d.defaclobjtype, d.defaclrole) END AS base, \
                   d.defaclacl FROM pg_default_acl d), \
               entries AS (SELECT d.oid, false AS revoke, a.* FROM d, aclexplode(d.defaclacl) a \
                           WHERE NOT (a.grantee, a.privilege_type, a.is_grantable) IN \
                                 (SELECT b.grantee, b.privilege_type, b.is_grantable FROM aclexplode(d.base) b) \
                           UNION ALL \
                           SELECT d.oid, true, b.* FROM d, aclexplode(d.base) b \
                           WHERE NOT (b.grantee, b.privilege_type) IN \
                                 (SELECT a.grantee, a.privilege_type FROM aclexplode(d.defaclacl) a)) \
               SELECT CASE WHEN d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN NULL \
                      ELSE d.defaclrole::regrole::text END, \
                      (SELECT format('%I', nspname) FROM pg_namespace WHERE oid = d.defaclnamespace), \
                      CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' \
                                           WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' \
                                           WHEN 'L' THEN 'LARGE OBJECTS' END, \
                      CASE e.grantee WHEN 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END, e.revoke, \
                      array_agg(e.privilege_type::text ORDER BY e.privilege_type), \
                      coalesce(array_agg(e.privilege_type::text ORDER BY e.privilege_type) FILTER (WHERE e.is_grantable), '{}') \
               FROM d JOIN entries e ON e.oid = d.oid WHERE e.grantee <> d.defaclrole \
               GROUP BY 1, 2, 3, 4, 5";
    for row in query(client, "default privileges", sql)? {
        let (for_role, schema, on, grantee, revoke): (
            Option<String>,
            Option<String>,
            Option<String>,
            String,
            bool,
        ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let Some(on) = on else {
            // A kind of object newer than this tool: known by name only, so refused.
            snapshot
                .unsupported
                .insert(format!("default privileges of a new kind for {grantee}"), String::new());
            continue;
        };
        let key = format!(
            "default privileges{} on {on}{} {} {grantee}",
            for_role.as_ref().map(|r| format!(" for {r}")).unwrap_or_default(),
            schema.as_ref().map(|s| format!(" in {s}")).unwrap_or_default(),
            if revoke { "revoked from" } else { "to" }
        );
        let def = Def::DefaultPrivileges {
            for_role,
            schema,
            on,
            grantee,
            privileges: row.get(5),
            grantable: row.get(6),
            revoke,
        };
        add(snapshot, key, None, def);
    }
    Ok(())
}

/// Comments on modelled objects (the public schema's stock comment is the same everywhere).
fn comments(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    let sql = "SELECT o.type, o.identity, d.description FROM pg_description d, \
               LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) o WHERE d.objoid >= 16384";
    for row in query(client, "comments", sql)? {
        let (kind, identity): (String, String) = (row.get(0), row.get(1));
        let target_key = format!("{kind} {identity}");
        // An extension's comment is the extension's own, set by CREATE EXTENSION.
        if !snapshot.objects.contains_key(&target_key) || kind == "extension" {
            continue;
        }
        let keyword = match kind.as_str() {
            "table column" => "COLUMN".to_owned(),
            "table constraint" => "CONSTRAINT".to_owned(),
            other => other.to_uppercase(),
        };
        let def = Def::Comment { target: format!("{keyword} {identity}"), text: row.get(2) };
        add(snapshot, format!("comment on {target_key}"), Some(target_key), def);
    }
    Ok(())
}

/// `pg_depend`, translated into keys: parts (a view's rewrite rule, a table's row type, a
/// constraint's index, an extension's members) stand for what they belong to.
fn dependencies(client: &mut Client, snapshot: &mut Snapshot) -> Result<()> {
    // Columns of anything but a table stand for the relation itself.
    let whole = |class: &str, id: &str, sub: &str| {
        format!(
            "CASE WHEN {class} = 'pg_class'::regclass \
                  AND (SELECT relkind FROM pg_class WHERE oid = {id}) NOT IN ('r', 'p') THEN 0 ELSE {sub} END"
        )
    };
    let sql = format!(
        "SELECT {}, {}, d.deptype::text FROM pg_depend d WHERE d.objid >= 16384 AND d.deptype IN ('n', 'a', 'i', 'e')",
        identity_key("d.classid", "d.objid", &whole("d.classid", "d.objid", "d.objsubid")),
        identity_key("d.refclassid", "d.refobjid", &whole("d.refclassid", "d.refobjid", "d.refobjsubid")),
    );
    let rows = query(client, "dependencies", &sql)?;
    let mut part_of: BTreeMap<String, String> = BTreeMap::new();
    let mut auto_refs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut edges = Vec::new();
    for row in &rows {
        let (Some(object), Some(referenced)) =
            (row.get::<_, Option<String>>(0), row.get::<_, Option<String>>(1))
        else {
            continue;
        };
        match row.get::<_, String>(2).as_str() {
            "i" | "e" => {
                part_of.insert(object, referenced);
            }
            _ if snapshot.implied.contains(&object) => {
                part_of.insert(object, referenced);
            }
            kind => {
                if kind == "a" {
                    auto_refs.entry(object.clone()).or_default().push(referenced.clone());
                }
                edges.push((object, referenced))
            }
        }
    }
    let resolve = |key: &str| -> String {
        let mut key = key.to_owned();
        for _ in 0..8 {
            match part_of.get(&key) {
                Some(whole) => key = whole.clone(),
                None => break,
            }
        }
        key
    };
    // Parts of an extension's objects (an operator class's functions) and of objects already
    // noted (a domain's constraint) are not noted again.
    let belongs_elsewhere = |object: &str, snapshot: &Snapshot| {
        auto_refs
            .get(object)
            .into_iter()
            .flatten()
            .map(|r| resolve(r))
            .any(|whole| whole.starts_with("extension ") || snapshot.unsupported.contains_key(&whole))
    };
    for (raw_object, referenced) in edges {
        let object = raw_object.as_str();
        // A serial column's sequence is "owned by" the column, yet made before it: that link is
        // the SequenceOwner object's, not the sequence's.
        if object.starts_with("sequence ") && referenced.starts_with("table column ") {
            continue;
        }
        let (object, referenced) = (resolve(object), resolve(&referenced));
        if object == referenced {
            continue;
        }
        if snapshot.objects.contains_key(&object) && snapshot.objects.contains_key(&referenced) {
            snapshot.deps.entry(object).or_default().insert(referenced);
        } else if !snapshot.objects.contains_key(&object)
            && !is_internal(&object)
            && !belongs_elsewhere(&raw_object, snapshot)
        {
            snapshot.unsupported.entry(object).or_default();
        }
    }
    let objects = &snapshot.objects;
    for deps in snapshot.deps.values_mut() {
        deps.retain(|dep| objects.contains_key(dep));
    }
    let owners: Vec<(String, String)> = snapshot
        .objects
        .iter()
        .filter_map(|(key, object)| object.owner.clone().map(|owner| (key.clone(), owner)))
        .collect();
    for (key, owner) in owners {
        if snapshot.objects.contains_key(&owner) {
            snapshot.deps.entry(key).or_default().insert(owner);
        }
    }
    link_partition_copies(snapshot);
    Ok(())
}

/// A copy comes after what it copies, and its table's attachment (ATTACH PARTITION, INHERIT)
/// after both, so that the attachment finds the copies made beforehand and takes them as its own
/// (and DETACH or NO INHERIT comes before what stays of them is dropped).
fn link_partition_copies(snapshot: &mut Snapshot) {
    let copies: Vec<(String, Option<String>, String)> = snapshot
        .objects
        .iter()
        .filter_map(|(key, object)| {
            let original = object.inherited_from.clone().filter(|o| snapshot.objects.contains_key(o))?;
            Some((key.clone(), object.owner.clone(), original))
        })
        .collect();
    for (key, table, original) in copies {
        snapshot.deps.entry(key.clone()).or_default().insert(original.clone());
        let Some(table) = table else { continue };
        let inheritance = format!("inheritance of {table} from ");
        let attachments: Vec<String> = snapshot
            .objects
            .keys()
            .filter(|k| **k == format!("partition of {table}") || k.starts_with(&inheritance))
            .cloned()
            .collect();
        for attachment in attachments {
            snapshot.deps.entry(attachment).or_default().extend([key.clone(), original.clone()]);
        }
    }
}

/// Objects of the server's own making, the migration and seed records with their parts, and
/// default privileges (read under keys of their own, see `default_privileges`).
fn is_internal(key: &str) -> bool {
    const RECORDS: [&str; 2] = ["public._sqlx_migrations", "public._xtask_seeds"];
    key.starts_with("default acl ")
        || key.contains(" pg_toast.")
        || key.starts_with("toast table")
        || RECORDS
            .iter()
            .any(|records| key.ends_with(&format!(" {records}")) || key.contains(&format!(" {records}.")))
}
