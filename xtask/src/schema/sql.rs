//! SQL text for one object: how to create it, drop it, or change it in place.

use super::catalog::{ColumnSpec, Def, SequenceSpec};
use crate::naming::{quote_ident, quote_literal};

pub fn create(def: &Def) -> String {
    match def {
        Def::Schema { name } => format!("CREATE SCHEMA {name};"),
        Def::Extension { name, schema, version } => {
            format!(
                "CREATE EXTENSION IF NOT EXISTS {name} WITH SCHEMA {schema} VERSION {};",
                quote_literal(version)
            )
        }
        Def::Collation { name, provider, locale, lc_collate, lc_ctype, deterministic, rules } => {
            let mut options = vec![format!("provider = {provider}")];
            for (option, value) in [("locale", locale), ("lc_collate", lc_collate), ("lc_ctype", lc_ctype)] {
                if let Some(value) = value {
                    options.push(format!("{option} = {}", quote_literal(value)));
                }
            }
            if !deterministic {
                options.push("deterministic = false".into());
            }
            if let Some(rules) = rules {
                options.push(format!("rules = {}", quote_literal(rules)));
            }
            format!("CREATE COLLATION {name} ({});", options.join(", "))
        }
        Def::Enum { name, labels } => {
            let labels: Vec<String> = labels.iter().map(|l| quote_literal(l)).collect();
            format!("CREATE TYPE {name} AS ENUM ({});", labels.join(", "))
        }
        Def::Sequence { name, spec } => format!("CREATE SEQUENCE {name}{};", sequence_options(spec)),
        Def::SequenceOwner { sequence, column } => format!("ALTER SEQUENCE {sequence} OWNED BY {column};"),
        Def::Table { name, unlogged, row_security, force_row_security, partition_by, options } => {
            create_child_table(name, *unlogged, &[], partition_by.as_deref(), &[], options)
                + &self::row_security(name, (false, false), (*row_security, *force_row_security))
        }
        Def::Partition { table, parent, bound } => {
            format!("ALTER TABLE {parent} ATTACH PARTITION {table} {bound};")
        }
        Def::Inherits { table, parent } => format!("ALTER TABLE {table} INHERIT {parent};"),
        Def::ReplicaIdentity { table, setting } => format!("ALTER TABLE {table} REPLICA IDENTITY {setting};"),
        Def::Policy { table, name, permissive, command, roles, using, check } => {
            let mut text = format!("CREATE POLICY {name} ON {table}");
            if !permissive {
                text += " AS RESTRICTIVE";
            }
            if command != "ALL" {
                text += &format!(" FOR {command}");
            }
            text + &policy_clauses(roles, using.as_deref(), check.as_deref()) + ";"
        }
        Def::Column { table, name, spec, .. } => {
            let mut lines = vec![format!("ALTER TABLE {table} ADD COLUMN {};", column(name, spec, None))];
            lines.extend(column_settings(table, name, None, spec));
            lines.join("\n")
        }
        Def::Default { table, column, expression } => {
            format!("ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {expression};")
        }
        Def::Constraint { table, name, definition } => {
            format!("ALTER TABLE {table} ADD CONSTRAINT {name} {definition};")
        }
        Def::Index { definition, .. } => format!("{definition};"),
        Def::View { name, materialized, options, query } => {
            let kind = if *materialized { "MATERIALIZED VIEW" } else { "VIEW" };
            let options = options.as_ref().map(|o| format!(" WITH ({o})")).unwrap_or_default();
            format!("CREATE {kind} {name}{options} AS\n{query};")
        }
        Def::Function { definition, .. } => format!("{definition};"),
        Def::Trigger { table, name, definition, enabled } => {
            let state = match enabled.as_str() {
                "D" => "DISABLE",
                "R" => "ENABLE REPLICA",
                "A" => "ENABLE ALWAYS",
                _ => return format!("{definition};"),
            };
            format!("{definition};\nALTER TABLE {table} {state} TRIGGER {name};")
        }
        Def::Grant { target, column, grantee, privileges, grantable, default } => {
            let on = Privileges { target, column: column.as_deref(), grantee };
            on.change((default, &[]), (privileges, grantable)).join("\n")
        }
        Def::DefaultPrivileges { for_role, schema, on, grantee, privileges, grantable, revoke } => {
            let prefix = default_privileges_prefix(for_role.as_deref(), schema.as_deref());
            if *revoke {
                return format!("{prefix} REVOKE {} ON {on} FROM {grantee};", privileges.join(", "));
            }
            let mut lines = Vec::new();
            let plain: Vec<&String> = privileges.iter().filter(|p| !grantable.contains(p)).collect();
            if !plain.is_empty() {
                lines.push(format!("{prefix} GRANT {} ON {on} TO {grantee};", join(&plain)));
            }
            if !grantable.is_empty() {
                lines.push(format!(
                    "{prefix} GRANT {} ON {on} TO {grantee} WITH GRANT OPTION;",
                    grantable.join(", ")
                ));
            }
            lines.join("\n")
        }
        Def::Comment { target, text } => format!("COMMENT ON {target} IS {};", quote_literal(text)),
    }
}

fn join(items: &[&String]) -> String {
    items.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn default_privileges_prefix(for_role: Option<&str>, schema: Option<&str>) -> String {
    let mut prefix = "ALTER DEFAULT PRIVILEGES".to_owned();
    if let Some(role) = for_role {
        prefix += &format!(" FOR ROLE {role}");
    }
    if let Some(schema) = schema {
        prefix += &format!(" IN SCHEMA {schema}");
    }
    prefix
}

/// What one grantee holds on one object (or one column of it).
struct Privileges<'a> {
    target: &'a str,
    column: Option<&'a str>,
    grantee: &'a str,
}

impl Privileges<'_> {
    /// GRANT and REVOKE statements from one (privileges, those held WITH GRANT OPTION) to another.
    fn change(&self, from: (&[String], &[String]), to: (&[String], &[String])) -> Vec<String> {
        let Privileges { target, grantee, .. } = self;
        let minus =
            |a: &[String], b: &[String]| a.iter().filter(|p| !b.contains(p)).cloned().collect::<Vec<_>>();
        let mut out = Vec::new();
        let revoked = minus(from.0, to.0);
        if !revoked.is_empty() {
            out.push(format!("REVOKE {} ON {target} FROM {grantee};", self.list(&revoked)));
        }
        let option_lost: Vec<String> = minus(from.1, to.1).into_iter().filter(|p| to.0.contains(p)).collect();
        if !option_lost.is_empty() {
            out.push(format!(
                "REVOKE GRANT OPTION FOR {} ON {target} FROM {grantee};",
                self.list(&option_lost)
            ));
        }
        let added = minus(&minus(to.0, from.0), to.1);
        if !added.is_empty() {
            out.push(format!("GRANT {} ON {target} TO {grantee};", self.list(&added)));
        }
        let with_option = minus(to.1, from.1);
        if !with_option.is_empty() {
            out.push(format!(
                "GRANT {} ON {target} TO {grantee} WITH GRANT OPTION;",
                self.list(&with_option)
            ));
        }
        out
    }

    /// `SELECT, UPDATE`, or `SELECT (c), UPDATE (c)` for a column.
    fn list(&self, privileges: &[String]) -> String {
        let one = |p: &String| match self.column {
            Some(column) => format!("{p} ({column})"),
            None => p.clone(),
        };
        privileges.iter().map(one).collect::<Vec<_>>().join(", ")
    }
}

/// The statement dropping the object; `None` for what cannot be dropped on its own.
pub fn drop(def: &Def) -> Option<String> {
    Some(match def {
        Def::Schema { name } => format!("DROP SCHEMA {name};"),
        Def::Extension { name, .. } => format!("DROP EXTENSION {name};"),
        Def::Collation { name, .. } => format!("DROP COLLATION {name};"),
        Def::Partition { table, parent, .. } => format!("ALTER TABLE {parent} DETACH PARTITION {table};"),
        Def::Inherits { table, parent } => format!("ALTER TABLE {table} NO INHERIT {parent};"),
        Def::ReplicaIdentity { table, .. } => format!("ALTER TABLE {table} REPLICA IDENTITY DEFAULT;"),
        Def::Policy { table, name, .. } => format!("DROP POLICY {name} ON {table};"),
        Def::Enum { name, .. } => format!("DROP TYPE {name};"),
        Def::Sequence { name, .. } => format!("DROP SEQUENCE {name};"),
        Def::SequenceOwner { sequence, .. } => format!("ALTER SEQUENCE {sequence} OWNED BY NONE;"),
        Def::Table { name, .. } => format!("DROP TABLE {name};"),
        Def::Column { table, name, .. } => format!("ALTER TABLE {table} DROP COLUMN {name};"),
        Def::Default { table, column, .. } => {
            format!("ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT;")
        }
        Def::Constraint { table, name, .. } => format!("ALTER TABLE {table} DROP CONSTRAINT {name};"),
        Def::Index { name, .. } => format!("DROP INDEX {name};"),
        Def::View { name, materialized: false, .. } => format!("DROP VIEW {name};"),
        Def::View { name, materialized: true, .. } => format!("DROP MATERIALIZED VIEW {name};"),
        Def::Function { signature, procedure, .. } => {
            format!("DROP {} {signature};", if *procedure { "PROCEDURE" } else { "FUNCTION" })
        }
        Def::Trigger { table, name, .. } => format!("DROP TRIGGER {name} ON {table};"),
        Def::Comment { target, .. } => format!("COMMENT ON {target} IS NULL;"),
        Def::Grant { target, column, grantee, privileges, grantable, default } => {
            let on = Privileges { target, column: column.as_deref(), grantee };
            on.change((privileges, grantable), (default, &[])).join("\n")
        }
        Def::DefaultPrivileges { for_role, schema, on, grantee, privileges, revoke, .. } => {
            let prefix = default_privileges_prefix(for_role.as_deref(), schema.as_deref());
            if *revoke {
                format!("{prefix} GRANT {} ON {on} TO {grantee};", privileges.join(", "))
            } else {
                format!("{prefix} REVOKE ALL ON {on} FROM {grantee};")
            }
        }
    })
}

/// In-place changes for the kinds that have them (columns and enums are handled by the caller).
pub fn alter(old: &Def, new: &Def) -> Vec<String> {
    match (old, new) {
        (
            Def::Table {
                unlogged: was_unlogged, row_security: a1, force_row_security: a2, options: o1, ..
            },
            Def::Table { name, unlogged, row_security: b1, force_row_security: b2, options: o2, .. },
        ) => {
            let mut statements = Vec::new();
            let key = |option: &String| option.split('=').next().unwrap_or_default().to_owned();
            let set: Vec<&String> = o2.iter().filter(|o| !o1.contains(o)).collect();
            let reset: Vec<String> =
                o1.iter().map(key).filter(|k| !o2.iter().any(|o| key(o) == *k)).collect();
            if !set.is_empty() {
                statements.push(format!("ALTER TABLE {name} SET ({});", join(&set)));
            }
            if !reset.is_empty() {
                statements.push(format!("ALTER TABLE {name} RESET ({});", reset.join(", ")));
            }
            if was_unlogged != unlogged {
                statements.push(format!(
                    "ALTER TABLE {name} SET {};",
                    if *unlogged { "UNLOGGED" } else { "LOGGED" }
                ));
            }
            let security = row_security(name, (*a1, *a2), (*b1, *b2));
            statements.extend(security.lines().filter(|l| !l.is_empty()).map(str::to_owned));
            statements
        }
        (Def::Sequence { .. }, Def::Sequence { name, spec }) => {
            let s = spec;
            vec![format!(
                "ALTER SEQUENCE {name} AS {} INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {} CACHE {} {}CYCLE;",
                s.data_type,
                s.increment,
                s.min,
                s.max,
                s.start,
                s.cache,
                if s.cycle { "" } else { "NO " }
            )]
        }
        (Def::Extension { schema: s1, version: v1, .. }, Def::Extension { name, schema, version }) => {
            let mut statements = Vec::new();
            if s1 != schema {
                statements.push(format!("ALTER EXTENSION {name} SET SCHEMA {schema};"));
            }
            if v1 != version {
                statements.push(format!("ALTER EXTENSION {name} UPDATE TO {};", quote_literal(version)));
            }
            statements
        }
        (
            Def::Policy { roles: r1, using: u1, check: c1, .. },
            Def::Policy { table, name, roles, using, check, .. },
        ) => {
            // ALTER POLICY sets what it names and keeps the rest.
            let changed = |a: &Option<String>, b: &Option<String>| if a == b { None } else { b.clone() };
            let roles = if r1 == roles { String::new() } else { format!(" TO {}", roles.join(", ")) };
            let clauses = policy_clauses(&[], changed(u1, using).as_deref(), changed(c1, check).as_deref());
            vec![format!("ALTER POLICY {name} ON {table}{roles}{clauses};")]
        }
        (
            Def::Grant { privileges: p1, grantable: g1, .. },
            Def::Grant { target, column, grantee, privileges: p2, grantable: g2, .. },
        ) => Privileges { target, column: column.as_deref(), grantee }.change((p1, g1), (p2, g2)),
        (
            Def::SequenceOwner { .. }
            | Def::Default { .. }
            | Def::Comment { .. }
            | Def::Function { .. }
            | Def::ReplicaIdentity { .. },
            _,
        ) => vec![create(new)],
        _ => Vec::new(),
    }
}

/// `ALTER TABLE .. ENABLE/FORCE ROW LEVEL SECURITY` lines (each after a newline) from one
/// (enabled, forced) pair to another.
pub fn row_security(table: &str, from: (bool, bool), to: (bool, bool)) -> String {
    let mut text = String::new();
    if from.0 != to.0 {
        text +=
            &format!("\nALTER TABLE {table} {} ROW LEVEL SECURITY;", if to.0 { "ENABLE" } else { "DISABLE" });
    }
    if from.1 != to.1 {
        text += &format!("\nALTER TABLE {table} {}FORCE ROW LEVEL SECURITY;", if to.1 { "" } else { "NO " });
    }
    text
}

/// ` TO roles USING (..) WITH CHECK (..)`, each part left out when empty.
fn policy_clauses(roles: &[String], using: Option<&str>, check: Option<&str>) -> String {
    let mut text = String::new();
    if !roles.is_empty() && roles != ["PUBLIC"] {
        text += &format!(" TO {}", roles.join(", "));
    }
    if let Some(using) = using {
        text += &format!(" USING ({using})");
    }
    if let Some(check) = check {
        text += &format!(" WITH CHECK ({check})");
    }
    text
}

/// CREATE TABLE, with `INHERITS (parents)` when it has any, and storage parameters `options`.
pub fn create_child_table(
    name: &str,
    unlogged: bool,
    columns: &[String],
    partition_by: Option<&str>,
    parents: &[&str],
    options: &[String],
) -> String {
    let unlogged = if unlogged { "UNLOGGED " } else { "" };
    let mut tail = String::new();
    if !parents.is_empty() {
        tail += &format!(" INHERITS ({})", parents.join(", "));
    }
    if let Some(key) = partition_by {
        tail += &format!(" PARTITION BY {key}");
    }
    if !options.is_empty() {
        tail += &format!(" WITH ({})", options.join(", "));
    }
    if columns.is_empty() {
        return format!("CREATE {unlogged}TABLE {name} (){tail};");
    }
    format!("CREATE {unlogged}TABLE {name} (\n    {}\n){tail};", columns.join(",\n    "))
}

/// A column as written in CREATE TABLE or ADD COLUMN.
pub fn column(name: &str, spec: &ColumnSpec, default: Option<&str>) -> String {
    let mut text = format!("{name} {}", spec.data_type);
    if let Some(collation) = &spec.collation {
        text += &format!(" COLLATE {collation}");
    }
    if let Some(expression) = &spec.generated {
        let kind = if spec.generated_virtual { "VIRTUAL" } else { "STORED" };
        text += &format!(" GENERATED ALWAYS AS ({expression}) {kind}");
    }
    if let Some(kind) = spec.identity {
        text += &format!(" GENERATED {} AS IDENTITY{}", identity_kind(kind), identity_options(spec));
    }
    if let Some(default) = default {
        text += &format!(" DEFAULT {default}");
    }
    match (named_not_null(spec), spec.not_null) {
        (Some(constraint), true) => text += &format!(" CONSTRAINT {constraint} NOT NULL"),
        (None, true) => text += " NOT NULL",
        _ => {}
    }
    text
}

/// The NOT NULL constraint's name where it is not the one PostgreSQL would give.
pub fn named_not_null(spec: &ColumnSpec) -> Option<&str> {
    spec.not_null_name.as_deref().filter(|_| !spec.not_null_name_is_default)
}

pub fn identity_kind(kind: char) -> &'static str {
    if kind == 'a' { "ALWAYS" } else { "BY DEFAULT" }
}

/// Whether a constraint is backed by an index of its own (a key or an exclusion).
pub fn makes_index(def: &Def) -> bool {
    matches!(def, Def::Constraint { definition, .. }
        if ["PRIMARY KEY", "UNIQUE", "EXCLUDE"].iter().any(|k| definition.starts_with(k)))
}

/// `name` qualified with the schema of `qualified` (a constraint's index lives beside its table).
pub fn beside(qualified: &str, name: &str) -> String {
    let (schema, _) = split_qualified(qualified);
    format!("{schema}.{name}")
}

/// `SET`-able options (`INCREMENT BY 5`, `NO CYCLE`) that differ from sequence `a` to `b`.
pub fn changed_sequence_options(a: &SequenceSpec, b: &SequenceSpec) -> Vec<String> {
    let mut options = Vec::new();
    for (word, x, y) in [
        ("INCREMENT BY", a.increment, b.increment),
        ("MINVALUE", a.min, b.min),
        ("MAXVALUE", a.max, b.max),
        ("START WITH", a.start, b.start),
        ("CACHE", a.cache, b.cache),
    ] {
        if x != y {
            options.push(format!("{word} {y}"));
        }
    }
    if a.cycle != b.cycle {
        options.push(if b.cycle { "CYCLE" } else { "NO CYCLE" }.into());
    }
    options
}

/// ALTER COLUMN ... SET STORAGE, COMPRESSION and STATISTICS from one column's settings to another's
/// (`None`: a column just made, at the defaults).
pub fn column_settings(table: &str, name: &str, from: Option<&ColumnSpec>, to: &ColumnSpec) -> Vec<String> {
    let prefix = format!("ALTER TABLE {table} ALTER COLUMN {name}");
    let mut out = Vec::new();
    if from.and_then(|f| f.storage.as_ref()) != to.storage.as_ref() {
        out.push(format!("{prefix} SET STORAGE {};", to.storage.as_deref().unwrap_or(&to.type_storage)));
    }
    if from.and_then(|f| f.compression.as_ref()) != to.compression.as_ref() {
        out.push(format!("{prefix} SET COMPRESSION {};", to.compression.as_deref().unwrap_or("DEFAULT")));
    }
    if from.and_then(|f| f.statistics) != to.statistics {
        out.push(format!("{prefix} SET STATISTICS {};", to.statistics.unwrap_or(-1)));
    }
    out
}

/// A copied column once its original went from `before` to `after`: ALTER COLUMN passes each
/// change on to the copies.
pub fn passed_on(copy: &ColumnSpec, before: &ColumnSpec, after: &ColumnSpec) -> ColumnSpec {
    let mut spec = copy.clone();
    if before.data_type != after.data_type {
        spec.data_type = after.data_type.clone();
        spec.type_storage = after.type_storage.clone();
    }
    if before.collation != after.collation {
        spec.collation = after.collation.clone();
    }
    if before.not_null != after.not_null {
        spec.not_null = after.not_null;
    }
    if (before.identity, &before.identity_options) != (after.identity, &after.identity_options) {
        spec.identity = after.identity;
        spec.identity_options = after.identity_options.clone();
    }
    if (&before.generated, before.generated_virtual) != (&after.generated, after.generated_virtual) {
        spec.generated = after.generated.clone();
        spec.generated_virtual = after.generated_virtual;
    }
    if before.storage != after.storage {
        spec.storage = after.storage.clone();
    }
    if before.compression != after.compression {
        spec.compression = after.compression.clone();
    }
    if before.statistics != after.statistics {
        spec.statistics = after.statistics;
    }
    spec
}

/// Converts a column to its rebuilt enum type through text.
pub fn retype_to_rebuilt_enum(column: &Def) -> String {
    let Def::Column { table, name, spec, .. } = column else { return String::new() };
    let via = if spec.data_type.ends_with("[]") { "text[]" } else { "text" };
    format!(
        "ALTER TABLE {table} ALTER COLUMN {name} TYPE {} USING {name}::{via}::{};",
        spec.data_type, spec.data_type
    )
}

/// `schema."name__xtask_old"`: where a rebuilt enum's old type is kept until its columns moved.
pub fn aside(qualified: &str) -> String {
    let (schema, _) = split_qualified(qualified);
    format!("{schema}.{}", unqualified_aside(qualified))
}

pub fn unqualified_aside(qualified: &str) -> String {
    let (_, name) = split_qualified(qualified);
    quote_ident(&format!("{}__xtask_old", unquote(name)))
}

/// `schema.name` at its dot (either part may be a quoted identifier holding dots).
fn split_qualified(qualified: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in qualified.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => return (&qualified[..i], &qualified[i + 1..]),
            _ => {}
        }
    }
    ("", qualified)
}

pub fn unquote(identifier: &str) -> String {
    match identifier.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => identifier.to_owned(),
    }
}

/// ` (START WITH 100 ...)` for an identity column whose sequence is not PostgreSQL's default.
pub fn identity_options(spec: &ColumnSpec) -> String {
    let options = spec.identity_options.as_ref().map(sequence_option_list).unwrap_or_default();
    if options.is_empty() { String::new() } else { format!(" ({})", options.join(" ")) }
}

/// Options of CREATE SEQUENCE that differ from what PostgreSQL would choose.
fn sequence_options(spec: &SequenceSpec) -> String {
    let mut text = String::new();
    if spec.data_type != "bigint" {
        text += &format!(" AS {}", spec.data_type);
    }
    for option in sequence_option_list(spec) {
        text += &format!(" {option}");
    }
    text
}

/// The sequence options, after `AS type`, that differ from that type's defaults.
pub fn sequence_option_list(spec: &SequenceSpec) -> Vec<String> {
    let (type_min, type_max) = match spec.data_type.as_str() {
        "smallint" => (i64::from(i16::MIN), i64::from(i16::MAX)),
        "integer" => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (i64::MIN, i64::MAX),
    };
    let ascending = spec.increment > 0;
    let (min, max) = if ascending { (1, type_max) } else { (type_min, -1) };
    let start = if ascending { spec.min } else { spec.max };
    let mut options = Vec::new();
    for (word, value, default) in [
        ("INCREMENT BY", spec.increment, 1),
        ("MINVALUE", spec.min, min),
        ("MAXVALUE", spec.max, max),
        ("START WITH", spec.start, start),
        ("CACHE", spec.cache, 1),
    ] {
        if value != default {
            options.push(format!("{word} {value}"));
        }
    }
    if spec.cycle {
        options.push("CYCLE".into());
    }
    options
}

/// Whether every value of type `from` fits `to` unchanged, so the change needs no review.
pub fn widens(from: &str, to: &str) -> bool {
    let widening_numbers = [
        ("smallint", "integer"),
        ("smallint", "bigint"),
        ("integer", "bigint"),
        ("real", "double precision"),
        ("smallint", "numeric"),
        ("integer", "numeric"),
        ("bigint", "numeric"),
    ];
    if widening_numbers.contains(&(from, to)) {
        return true;
    }
    let text_like = |t: &str| t == "text" || t == "character varying";
    match (modifier(from, "character varying"), modifier(to, "character varying")) {
        (Some(a), Some(b)) => return b.is_empty() || (!a.is_empty() && b[0] >= a[0]),
        (Some(_), None) if text_like(to) => return true,
        _ => {}
    }
    if text_like(from) && text_like(to) {
        return true;
    }
    match (modifier(from, "numeric"), modifier(to, "numeric")) {
        (Some(_), Some(b)) if b.is_empty() => true,
        (Some(a), Some(b)) if a.len() == 2 && b.len() == 2 => b[1] >= a[1] && b[0] - b[1] >= a[0] - a[1],
        _ => false,
    }
}

/// `base(1,2)` → `[1, 2]`; `base` → `[]`; another type → None.
fn modifier(data_type: &str, base: &str) -> Option<Vec<i64>> {
    let rest = data_type.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(|n| n.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_types_need_no_review() {
        assert!(widens("integer", "bigint"));
        assert!(widens("character varying(20)", "character varying(40)"));
        assert!(widens("character varying(20)", "text"));
        assert!(widens("text", "character varying"));
        assert!(widens("numeric(10,2)", "numeric(12,2)"));
        assert!(widens("numeric(10,2)", "numeric"));
        assert!(!widens("bigint", "integer"));
        assert!(!widens("character varying(40)", "character varying(20)"));
        assert!(!widens("text", "character varying(10)"));
        assert!(!widens("character varying", "character varying(5)"));
        assert!(widens("character varying(5)", "character varying"));
        assert!(!widens("numeric(10,2)", "numeric(10,1)"));
        assert!(!widens("text", "integer"));
    }

    #[test]
    fn aside_names_keep_schema_and_quote() {
        assert_eq!(aside("public.mood"), "public.\"mood__xtask_old\"");
        assert_eq!(aside("\"a.b\".\"Mood\""), "\"a.b\".\"Mood__xtask_old\"");
    }

    #[test]
    fn sequences_list_only_what_differs_from_defaults() {
        let spec = |data_type: &str, start, increment, min, max| SequenceSpec {
            data_type: data_type.into(),
            start,
            increment,
            min,
            max,
            cache: 1,
            cycle: false,
        };
        assert_eq!(sequence_options(&spec("bigint", 1, 1, 1, i64::MAX)), "");
        assert_eq!(
            sequence_options(&spec("integer", 100, 5, 1, i64::from(i32::MAX))),
            " AS integer INCREMENT BY 5 START WITH 100"
        );
    }
}
