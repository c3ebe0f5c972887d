//! The statements that turn one [`Snapshot`] into another, in dependency order.
//!
//! Each object is dropped, created, altered in place, or dropped and created again. Objects that
//! depend on one being dropped or reshaped (a view over a column whose type changes, a foreign key
//! to a rebuilt constraint) are dropped and created again too. Statements come in three phases:
//! drops (dependents first, by the old dependency graph), then creates and alters (dependencies
//! first, by the new graph), then the drops that had to wait for something to stop using the
//! object (an enum no column has any more, a function no default calls any more).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::catalog::{ColumnSpec, Def, Kind, Snapshot};
use super::sql;
use crate::naming::quote_literal;

/// One statement of a generated migration, with what a reviewer must know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Loses data (rows, values, enum values).
    Destructive(String),
    /// Worth a look: may fail on existing rows, or may not be what was meant.
    Review(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Drop,
    Create,
    Alter,
    Recreate,
    /// An enum that lost or reordered values: renamed aside, made anew, its columns converted.
    RebuildEnum,
}

/// How much a change to an object disturbs what depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reshape {
    /// A column's type changed: PostgreSQL converts its indexes and constraints itself, but not
    /// views, defaults, triggers or generated columns over it.
    ColumnType,
    /// A column converted to a rebuilt enum: constraints over it (a foreign key between two such
    /// columns) cannot follow by themselves.
    EnumColumn,
    /// An enum was rebuilt: columns are converted, everything else using it is made again.
    Enum,
    /// Dropped (maybe to be made again): nothing that uses it can stay.
    Gone,
}

/// The statements that turn `from` into `to`; none when they hold the same schema.
pub fn diff(from: &Snapshot, to: &Snapshot) -> Vec<Statement> {
    Planner::new(from, to).statements()
}

struct Planner<'a> {
    from: &'a Snapshot,
    to: &'a Snapshot,
    actions: BTreeMap<String, Action>,
    /// Columns converted to a rebuilt enum with `USING col::text::type`.
    retyped: BTreeSet<String>,
    /// Old object to the dropped object whose drop takes it along (see `drop_unit`).
    drop_units: BTreeMap<String, String>,
    /// New object to the objects it owns (a table's columns, a column's default).
    parts: BTreeMap<String, Vec<String>>,
}

impl<'a> Planner<'a> {
    fn new(from: &'a Snapshot, to: &'a Snapshot) -> Planner<'a> {
        let mut actions = BTreeMap::new();
        for (key, old) in &from.objects {
            match to.objects.get(key) {
                None => {
                    actions.insert(key.clone(), Action::Drop);
                }
                Some(new) if !old.def.same_as(&new.def) => {
                    actions.insert(key.clone(), change(&old.def, &new.def));
                }
                Some(_) => {}
            }
        }
        for key in to.objects.keys().filter(|key| !from.objects.contains_key(*key)) {
            actions.insert(key.clone(), Action::Create);
        }
        let mut parts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, object) in &to.objects {
            if let Some(owner) = &object.owner {
                parts.entry(owner.clone()).or_default().push(key.clone());
            }
        }
        let mut planner =
            Planner { from, to, actions, retyped: BTreeSet::new(), drop_units: BTreeMap::new(), parts };
        planner.recreate_parts_of_recreated_tables();
        planner.follow_partition_triggers();
        planner.rebuild_enums_used_at_once();
        planner.cascade();
        planner.drop_units =
            from.objects.keys().filter_map(|k| planner.find_drop_unit(k).map(|u| (k.clone(), u))).collect();
        planner
    }

    /// A table made anew (its partitioning changed) is made with all its parts.
    fn recreate_parts_of_recreated_tables(&mut self) {
        let tables: Vec<String> = self
            .actions
            .iter()
            .filter(|(k, a)| **a == Action::Recreate && self.is_table(k))
            .map(|(k, _)| k.clone())
            .collect();
        for table in tables {
            let mut owned = vec![table];
            while let Some(owner) = owned.pop() {
                for (key, object) in &self.from.objects {
                    if object.owner.as_deref() == Some(&owner) && self.to.objects.contains_key(key) {
                        self.actions.insert(key.clone(), Action::Recreate);
                        owned.push(key.clone());
                    }
                }
            }
        }
    }

    fn is_table(&self, key: &str) -> bool {
        matches!(self.to.objects.get(key).map(|o| o.def.kind()), Some(Kind::Table))
    }

    /// DETACH PARTITION drops a partition's copies of its parent's triggers, and ATTACH makes them:
    /// a copy that stays as the table's own trigger is made again after the detach, and a trigger of
    /// the table's own that the attach will copy is dropped before it.
    fn follow_partition_triggers(&mut self) {
        for (key, old) in &self.from.objects {
            let Some(new) = self.to.objects.get(key) else { continue };
            if old.def.kind() != Kind::Trigger || old.inherited_from.is_some() == new.inherited_from.is_some()
            {
                continue;
            }
            let action = if old.inherited_from.is_some() { Action::Create } else { Action::Drop };
            self.actions.insert(key.clone(), action);
        }
    }

    /// Whether `table` (a key) is attached as a partition or to a parent (INHERIT) in this
    /// migration, or detached from one.
    fn attachment_changes(&self, table: &str) -> bool {
        let inheritance = format!("inheritance of {table} from ");
        self.action(&format!("partition of {table}")).is_some()
            || self
                .actions
                .range(inheritance.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&inheritance))
    }

    /// The parents a new table inherits from, made with it (`INHERITS (...)`).
    fn new_parents(&self, table: &str) -> Vec<&str> {
        self.parts_of(table)
            .filter(|k| matches!(self.action(k), Some(Action::Create | Action::Recreate)))
            .filter_map(|k| match &self.to.objects[k].def {
                Def::Inherits { parent, .. } => Some(parent.as_str()),
                _ => None,
            })
            .collect()
    }

    /// A value added with ALTER TYPE cannot be used before its transaction commits; an enum whose
    /// new value this same migration uses is rebuilt instead (a type made in the transaction can).
    fn rebuild_enums_used_at_once(&mut self) {
        let mut rebuild = Vec::new();
        for (key, action) in &self.actions {
            let (Some(Def::Enum { labels: old, .. }), Some(Def::Enum { labels: new, .. }), Action::Alter) = (
                self.from.objects.get(key).map(|o| &o.def),
                self.to.objects.get(key).map(|o| &o.def),
                action,
            ) else {
                continue;
            };
            let added: Vec<String> =
                new.iter().filter(|l| !old.contains(l)).map(|l| quote_literal(l)).collect();
            let used = self.actions.iter().any(|(user, action)| {
                *action != Action::Drop
                    && self.to.deps.get(user).is_some_and(|deps| deps.contains(key))
                    && added.iter().any(|literal| mentions(&self.to.objects[user].def, literal))
            });
            if used {
                rebuild.push(key.clone());
            }
        }
        for key in rebuild {
            self.actions.insert(key, Action::RebuildEnum);
        }
    }

    fn reshape(&self, key: &str) -> Option<Reshape> {
        match self.actions.get(key) {
            Some(Action::Drop | Action::Recreate) => Some(Reshape::Gone),
            Some(Action::RebuildEnum) => Some(Reshape::Enum),
            _ if self.retyped.contains(key) => Some(Reshape::EnumColumn),
            Some(Action::Alter) if self.column_type_changes(key) => Some(Reshape::ColumnType),
            _ => None,
        }
    }

    fn column_type_changes(&self, key: &str) -> bool {
        match (self.from.objects.get(key).map(|o| &o.def), self.to.objects.get(key).map(|o| &o.def)) {
            (Some(Def::Column { spec: a, .. }), Some(Def::Column { spec: b, .. })) => {
                a.data_type != b.data_type || a.collation != b.collation
            }
            _ => false,
        }
    }

    /// Makes again whatever depends on something dropped or reshaped, until nothing changes.
    fn cascade(&mut self) {
        loop {
            let mut changes = Vec::new();
            for (key, deps) in &self.from.deps {
                if !self.to.objects.contains_key(key) {
                    continue;
                }
                let action = self.actions.get(key).copied();
                if matches!(action, Some(Action::Drop | Action::Recreate | Action::RebuildEnum)) {
                    continue;
                }
                let def = &self.from.objects[key].def;
                // An attachment is made again when its tables are, not when its copies are.
                let counts = |dep: &&String| {
                    !matches!(def.kind(), Kind::Partition | Kind::Inherits) || self.is_table(dep)
                };
                let Some(strongest) = deps.iter().filter(counts).filter_map(|dep| self.reshape(dep)).max()
                else {
                    continue;
                };
                match follow_up(def, strongest) {
                    FollowUp::Recreate => changes.push((key.clone(), true)),
                    FollowUp::Retype if !self.retyped.contains(key) => changes.push((key.clone(), false)),
                    FollowUp::Retype | FollowUp::Nothing => {}
                }
            }
            if changes.is_empty() {
                return;
            }
            for (key, recreate) in changes {
                if recreate {
                    self.actions.insert(key, Action::Recreate);
                } else {
                    self.retyped.insert(key);
                }
            }
        }
    }

    fn action(&self, key: &str) -> Option<Action> {
        self.actions.get(key).copied()
    }

    /// The dropped object whose drop takes this one with it (itself when dropped on its own).
    fn drop_unit(&self, key: &str) -> Option<String> {
        self.drop_units.get(key).cloned()
    }

    /// A partition's copy goes with its original, unless the partition is detached first.
    fn find_drop_unit(&self, key: &str) -> Option<String> {
        let mut unit = None;
        let mut current = Some(key.to_owned());
        while let Some(k) = current {
            let dropped = matches!(self.action(&k), Some(Action::Drop | Action::Recreate));
            if dropped {
                unit = Some(k.clone());
            }
            let object = self.from.objects.get(&k);
            let original = object.and_then(|o| o.inherited_from.clone()).filter(|original| {
                let table = if self.from.objects[&k].def.kind() == Kind::Table {
                    Some(&k)
                } else {
                    object.and_then(|o| o.owner.as_ref())
                };
                dropped
                    && matches!(self.action(original), Some(Action::Drop | Action::Recreate))
                    && !table.is_some_and(|t| self.attachment_changes(t))
            });
            current = original.or_else(|| object.and_then(|o| o.owner.clone()));
        }
        unit
    }

    /// The created object whose statement makes this one too (a new table's columns and their
    /// defaults, a new column's default).
    fn create_unit(&self, key: &str) -> String {
        let mut unit = key.to_owned();
        loop {
            let Some(object) = self.to.objects.get(&unit) else { return unit };
            let made = |key: &str| matches!(self.action(key), Some(Action::Create | Action::Recreate));
            let inlined =
                matches!(object.def.kind(), Kind::Column | Kind::Default | Kind::Inherits) && made(&unit);
            match (&object.owner, inlined) {
                (Some(owner), true) if made(owner) => unit = owner.clone(),
                _ => return unit,
            }
        }
    }

    fn statements(&self) -> Vec<Statement> {
        let dropped: BTreeSet<String> = self.actions.keys().filter_map(|k| self.drop_unit(k)).collect();
        let late = self.late_drops(&dropped);
        let early: BTreeSet<String> = dropped.difference(&late).cloned().collect();

        let mut out = Vec::new();
        // Tables that point at each other are dropped once the foreign keys between them are.
        let cyclic = self.foreign_keys_in_cycles(&early);
        for key in &cyclic {
            out.extend(sql::drop(&self.from.objects[key].def).map(plain));
        }
        let early_order =
            topo(&early, self.from, |k| if cyclic.contains(k) { None } else { self.drop_unit(k) });
        for key in early_order.iter().rev() {
            out.extend(self.drop(key));
        }

        let creating: BTreeSet<String> = self
            .actions
            .iter()
            .filter(|(_, action)| !matches!(action, Action::Drop))
            .map(|(key, _)| key.clone())
            .chain(self.retyped.iter().cloned())
            .map(|key| self.create_unit(&key))
            .collect();
        let create_order = topo(&creating, self.to, |k| {
            let unit = self.create_unit(k);
            creating.contains(&unit).then_some(unit)
        });
        let makes_functions = create_order.iter().any(|k| self.to.objects[k].def.kind() == Kind::Function);
        if makes_functions {
            out.push(plain("SET LOCAL check_function_bodies = off;".into()));
        }
        for key in &create_order {
            out.extend(self.create_or_alter(key));
        }

        for (key, action) in &self.actions {
            if *action == Action::RebuildEnum {
                let Def::Enum { name, .. } = &self.to.objects[key].def else { continue };
                out.push(plain(format!("DROP TYPE {};", sql::aside(name))));
            }
        }
        let late_order = topo(&late, self.from, |k| self.drop_unit(k).filter(|u| late.contains(u)));
        for key in late_order.iter().rev() {
            out.extend(self.drop(key));
        }
        self.add_rename_hints(&mut out);
        out
    }

    /// Foreign keys dropped with their table that point at another dropped table from which a
    /// chain of dependencies leads back to theirs: dropped first, on their own, to break the cycle.
    fn foreign_keys_in_cycles(&self, dropped: &BTreeSet<String>) -> BTreeSet<String> {
        let unit = |key: &str| self.drop_unit(key).filter(|u| dropped.contains(u));
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (key, deps) in &self.from.deps {
            let Some(from) = unit(key) else { continue };
            edges
                .entry(from.clone())
                .or_default()
                .extend(deps.iter().filter_map(|d| unit(d)).filter(|to| *to != from));
        }
        let reaches = |start: &str, goal: &str| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![start.to_owned()];
            while let Some(node) = stack.pop() {
                if node == goal {
                    return true;
                }
                if seen.insert(node.clone()) {
                    stack.extend(edges.get(&node).into_iter().flatten().cloned());
                }
            }
            false
        };
        let mut cyclic = BTreeSet::new();
        for (key, object) in &self.from.objects {
            // A partition's copy goes with its original's drop, never on its own.
            let (Def::Constraint { definition, .. }, None) = (&object.def, &object.inherited_from) else {
                continue;
            };
            let Some(own) = unit(key).filter(|u| u != key && definition.starts_with("FOREIGN KEY")) else {
                continue;
            };
            let points_back = self
                .from
                .deps
                .get(key)
                .into_iter()
                .flatten()
                .filter_map(|d| unit(d))
                .any(|target| target != own && reaches(&target, &own));
            if points_back {
                cyclic.insert(key.clone());
            }
        }
        cyclic
    }

    /// Dropped objects that something staying still uses until the create phase has changed it.
    fn late_drops(&self, dropped: &BTreeSet<String>) -> BTreeSet<String> {
        let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (key, deps) in &self.from.deps {
            for dep in deps {
                dependents.entry(dep.as_str()).or_default().push(key.as_str());
            }
        }
        let mut members: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (key, unit) in &self.drop_units {
            members.entry(unit.as_str()).or_default().push(key.as_str());
        }
        let mut late = BTreeSet::new();
        loop {
            let mut grew = false;
            for (key, action) in &self.actions {
                if *action != Action::Drop || !dropped.contains(key) || late.contains(key) {
                    continue;
                }
                let members = members.get(key.as_str()).into_iter().flatten();
                let waits =
                    members.flat_map(|m| dependents.get(*m).into_iter().flatten()).any(|d| {
                        match self.drop_unit(d) {
                            None => true,
                            Some(unit) => unit != *key && late.contains(&unit),
                        }
                    });
                if waits {
                    late.insert(key.clone());
                    grew = true;
                }
            }
            if !grew {
                return late;
            }
        }
    }

    fn drop(&self, key: &str) -> Option<Statement> {
        let def = &self.from.objects[key].def;
        let mut statement = plain(sql::drop(def)?);
        if self.keeps_copies(key) {
            // ONLY leaves each child's copy in place, as the child's own.
            statement.sql = statement.sql.replacen("ALTER TABLE ", "ALTER TABLE ONLY ", 1);
        }
        match def {
            Def::Table { name, .. } if self.action(key) == Some(Action::Drop) => {
                statement.notes.push(Note::Destructive(format!("drops table {name} and every row in it")))
            }
            Def::Table { name, .. } if self.action(key) == Some(Action::Recreate) => {
                statement.notes.push(Note::Destructive(format!(
                    "drops table {name} and every row in it, to make it again with its new partitioning"
                )))
            }
            Def::Sequence { name, .. } if self.action(key) == Some(Action::Drop) => statement
                .notes
                .push(Note::Destructive(format!("drops sequence {name} and the position it had reached"))),
            // A virtual column holds no values; a plain column made in its place starts empty.
            Def::Column { table, name, spec, .. }
                if spec.generated_virtual && self.is_plain_in_target(key) =>
            {
                statement.notes.push(Note::Destructive(format!(
                    "drops virtual generated column {name} of {table}: the plain column made in its \
                     place starts empty, the values it computed are not kept"
                )))
            }
            Def::Extension { name, version, .. } if self.action(key) == Some(Action::Recreate) => {
                statement.notes.push(Note::Destructive(format!(
                    "{name} has no update path back from {version}: it is dropped and made again at the \
                     older version, and what depends on it (its types in columns, its operators in \
                     indexes) stops the drop"
                )))
            }
            Def::Column { spec, .. } if spec.generated_virtual => {}
            Def::Column { table, name, spec, .. } => {
                let what = if spec.generated.is_some() { "generated column" } else { "column" };
                let loses = self.action(key) == Some(Action::Drop)
                    || (spec.generated.is_none() && self.is_generated_in_target(key));
                if loses {
                    statement.notes.push(Note::Destructive(format!(
                        "drops {what} {name} of {table} and the values in it"
                    )));
                }
            }
            _ => {}
        }
        Some(statement)
    }

    /// Whether some inheriting table keeps, as its own, a copy of this dropped column or CHECK.
    fn keeps_copies(&self, key: &str) -> bool {
        matches!(self.from.objects[key].def, Def::Column { .. } | Def::Constraint { .. })
            && self.from.objects.iter().any(|(copy, object)| {
                object.inherited_from.as_deref() == Some(key)
                    && self.to.objects.get(copy).is_some_and(|o| o.inherited_from.is_none())
                    && object.owner.as_ref().is_some_and(|t| !self.attachment_changes(t))
            })
    }

    fn is_generated_in_target(&self, key: &str) -> bool {
        matches!(self.to.objects.get(key).map(|o| &o.def), Some(Def::Column { spec, .. }) if spec.generated.is_some())
    }

    fn is_plain_in_target(&self, key: &str) -> bool {
        matches!(self.to.objects.get(key).map(|o| &o.def), Some(Def::Column { spec, .. }) if spec.generated.is_none())
    }

    fn create_or_alter(&self, key: &str) -> Vec<Statement> {
        let new = &self.to.objects[key].def;
        if let Some(statements) = self.copy_statements(key) {
            return statements;
        }
        match self.action(key) {
            Some(Action::Create) => vec![self.create(key)],
            Some(Action::Recreate) => vec![self.create(key)],
            Some(Action::RebuildEnum) => self.rebuild_enum(key),
            Some(Action::Alter) | None => {
                let old = &self.from.objects[key].def;
                let mut statements = Vec::new();
                if self.retyped.contains(key) {
                    statements.push(plain(sql::retype_to_rebuilt_enum(new)));
                }
                if self.action(key) == Some(Action::Alter) {
                    let enums = |data_type: &str| {
                        let key = format!("type {data_type}");
                        [self.from, self.to].iter().any(|side| {
                            matches!(side.objects.get(&key).map(|o| &o.def), Some(Def::Enum { .. }))
                        })
                    };
                    statements.extend(alter(old, new, &enums));
                }
                statements
            }
            Some(Action::Drop) => Vec::new(),
        }
    }

    /// For a partition's copy of its parent's object, what to write if it differs from a plain
    /// object's; `None` when it does not. PostgreSQL makes a copy itself when its original is made
    /// (ADD COLUMN, a CHECK, a foreign key, a trigger) or the partition attached (a foreign key, a
    /// trigger). Checks, keys and indexes are made beforehand on a table being attached, which
    /// ATTACH PARTITION then takes as its copies; and keys and indexes of a parent are made ON ONLY
    /// it, each partition's own made and attached to it by name.
    fn copy_statements(&self, key: &str) -> Option<Vec<Statement>> {
        let object = &self.to.objects[key];
        let original = object.inherited_from.as_ref()?;
        let table = object.owner.as_ref()?;
        let attaching = self.attachment_changes(table);
        let action = self.action(key);
        if !matches!(action, Some(Action::Create | Action::Recreate)) {
            // A table about to be attached is still its own (its NOT NULL names are set then).
            return if attaching { None } else { self.copy_column_alter(key, original) };
        }
        let made_with_inherits = matches!(self.action(table), Some(Action::Create | Action::Recreate))
            && !self.new_parents(table).is_empty();
        if made_with_inherits && matches!(object.def, Def::Column { .. } | Def::Constraint { .. }) {
            return Some(Vec::new());
        }
        let index = match (&object.def, &self.to.objects.get(original)?.def) {
            (Def::Trigger { .. }, _) => return Some(Vec::new()),
            (Def::Constraint { definition, .. }, _) if definition.starts_with("FOREIGN KEY") => {
                return Some(Vec::new());
            }
            (Def::Column { .. } | Def::Constraint { .. }, _)
                if !attaching && !sql::makes_index(&object.def) =>
            {
                return Some(Vec::new());
            }
            _ if attaching => return None,
            (Def::Index { name, .. }, Def::Index { name: parent, .. }) => (name.clone(), parent.clone()),
            (
                Def::Constraint { table, name, .. },
                Def::Constraint { table: parent_table, name: parent, .. },
            ) => (sql::beside(table, name), sql::beside(parent_table, parent)),
            _ => return None,
        };
        let (index, parent) = index;
        Some(vec![self.create(key), plain(format!("ALTER INDEX {parent} ATTACH PARTITION {index};"))])
    }

    /// What a copied column needs beyond what its original's ALTER COLUMN brings it (PostgreSQL
    /// passes each on to the copies): nothing, mostly; a setting of the copy's own otherwise.
    fn copy_column_alter(&self, key: &str, original: &str) -> Option<Vec<Statement>> {
        let (Some(Def::Column { spec: old, .. }), new @ Def::Column { table, name, position, .. }) =
            (self.from.objects.get(key).map(|o| &o.def), &self.to.objects[key].def)
        else {
            return None;
        };
        let spec = match (
            self.from.objects.get(original).map(|o| &o.def),
            self.to.objects.get(original).map(|o| &o.def),
        ) {
            (Some(Def::Column { spec: before, .. }), Some(Def::Column { spec: after, .. })) => {
                sql::passed_on(old, before, after)
            }
            _ => old.clone(),
        };
        let after_original =
            Def::Column { table: table.clone(), name: name.clone(), position: *position, spec };
        Some(alter(&after_original, new, &|_| false))
    }

    fn create(&self, key: &str) -> Statement {
        let def = &self.to.objects[key].def;
        match def {
            Def::Table { name, unlogged, row_security, force_row_security, partition_by, options } => {
                let parents = self.new_parents(key);
                // Columns a new child inherits come with INHERITS; a partition's are its own until
                // it is attached.
                let inherited =
                    |k: &&String| !parents.is_empty() && self.to.objects[*k].inherited_from.is_some();
                let mut columns: Vec<(i16, String)> = self
                    .parts_of(key)
                    .filter(|k| matches!(self.action(k), Some(Action::Create | Action::Recreate)))
                    .filter(|k| !inherited(k))
                    .filter_map(|k| match &self.to.objects[k].def {
                        Def::Column { name, position, spec, .. } => {
                            Some((*position, sql::column(name, spec, self.new_default(k))))
                        }
                        _ => None,
                    })
                    .collect();
                columns.sort();
                let settings: Vec<String> = self
                    .parts_of(key)
                    .filter(|k| {
                        matches!(self.action(k), Some(Action::Create | Action::Recreate)) && !inherited(k)
                    })
                    .flat_map(|k| match &self.to.objects[k].def {
                        Def::Column { table, name, spec, .. } => {
                            sql::column_settings(table, name, None, spec)
                        }
                        _ => Vec::new(),
                    })
                    .collect();
                let columns: Vec<String> = columns.into_iter().map(|(_, c)| c).collect();
                let mut text = sql::create_child_table(
                    name,
                    *unlogged,
                    &columns,
                    partition_by.as_deref(),
                    &parents,
                    options,
                );
                for line in settings {
                    text += &format!("\n{line}");
                }
                text += &sql::row_security(name, (false, false), (*row_security, *force_row_security));
                plain(text)
            }
            Def::Column { table, name, spec, .. } => {
                let default = self.new_default(key);
                let mut lines =
                    vec![format!("ALTER TABLE {table} ADD COLUMN {};", sql::column(name, spec, default))];
                lines.extend(sql::column_settings(table, name, None, spec));
                let mut statement = plain(lines.join("\n"));
                if spec.not_null && default.is_none() && spec.identity.is_none() && spec.generated.is_none() {
                    statement.notes.push(Note::Review(format!(
                        "fails if {table} has rows: give {name} a DEFAULT, or add it nullable, fill it, \
                         then SET NOT NULL"
                    )));
                }
                statement
            }
            // A key made on a partitioned table ON ONLY it: each partition's is made and attached.
            Def::Constraint { table, name, definition }
                if sql::makes_index(def) && self.owner_is_partitioned(key) =>
            {
                plain(format!("ALTER TABLE ONLY {table} ADD CONSTRAINT {name} {definition};"))
            }
            Def::Partition { .. }
                if self
                    .from
                    .objects
                    .contains_key(&self.to.objects[key].owner.clone().unwrap_or_default()) =>
            {
                let mut statement = plain(sql::create(def));
                statement.notes.push(Note::Review("ATTACH PARTITION reads every row to check it fits the bound, under a lock that blocks writes; a row outside it makes this fail".into()));
                statement
            }
            Def::Extension { name, .. } => {
                let mut statement = plain(sql::create(def));
                statement.notes.push(Note::Review(format!(
                    "migrations run as the service's role, which may not create {name}: declare it in \
                     the service's `extensions` so that setup enables it as the admin"
                )));
                statement
            }
            _ => plain(sql::create(def)),
        }
    }

    /// Whether the table owning `key` is partitioned.
    fn owner_is_partitioned(&self, key: &str) -> bool {
        let owner = self.to.objects[key].owner.as_ref().and_then(|owner| self.to.objects.get(owner));
        matches!(owner.map(|o| &o.def), Some(Def::Table { partition_by: Some(_), .. }))
    }

    fn parts_of(&self, owner: &str) -> impl Iterator<Item = &String> {
        self.parts.get(owner).into_iter().flatten()
    }

    /// The default made together with a new column.
    fn new_default(&self, column_key: &str) -> Option<&str> {
        self.parts_of(column_key).find_map(|k| match &self.to.objects[k].def {
            Def::Default { expression, .. }
                if matches!(self.action(k), Some(Action::Create | Action::Recreate)) =>
            {
                Some(expression.as_str())
            }
            _ => None,
        })
    }

    fn rebuild_enum(&self, key: &str) -> Vec<Statement> {
        let (Def::Enum { labels: old, .. }, new @ Def::Enum { name, labels, .. }) =
            (&self.from.objects[key].def, &self.to.objects[key].def)
        else {
            return Vec::new();
        };
        let removed: Vec<String> =
            old.iter().filter(|l| !labels.contains(l)).map(|l| quote_literal(l)).collect();
        let mut rename = plain(format!("ALTER TYPE {name} RENAME TO {};", sql::unqualified_aside(name)));
        rename.notes.push(if removed.is_empty() {
            Note::Review(format!(
                "{name} is made anew and its columns converted, because its values are reordered or \
                 this migration uses a value it adds"
            ))
        } else {
            Note::Destructive(format!(
                "removes {} from {name}: rows holding {} make this migration fail",
                removed.join(", "),
                if removed.len() == 1 { "it" } else { "them" }
            ))
        });
        vec![rename, plain(sql::create(new))]
    }

    /// A dropped column and an added one of the same type in one table may be a rename.
    fn add_rename_hints(&self, statements: &mut [Statement]) {
        for (dropped, action) in &self.actions {
            let Some(Def::Column { table, name: old, spec, .. }) =
                self.from.objects.get(dropped).map(|o| &o.def)
            else {
                continue;
            };
            if *action != Action::Drop || self.drop_unit(dropped).as_deref() != Some(dropped) {
                continue;
            }
            for (added, action) in &self.actions {
                let Some(Def::Column { table: t2, name: new, spec: s2, .. }) =
                    self.to.objects.get(added).map(|o| &o.def)
                else {
                    continue;
                };
                if *action != Action::Create || t2 != table || s2.data_type != spec.data_type {
                    continue;
                }
                let hint = format!(
                    "if {old} was renamed to {new}, replace the DROP COLUMN {old} and ADD COLUMN {new} \
                     statements with: ALTER TABLE {table} RENAME COLUMN {old} TO {new};"
                );
                for statement in statements.iter_mut() {
                    let is_drop = statement.sql == format!("ALTER TABLE {table} DROP COLUMN {old};");
                    let is_add = statement.sql.starts_with(&format!("ALTER TABLE {table} ADD COLUMN {new} "));
                    if is_drop || is_add {
                        statement.notes.push(Note::Review(hint.clone()));
                    }
                }
            }
        }
    }
}

/// Whether an object's SQL holds `text` (a quoted literal, as the server's deparsers quote it).
fn mentions(def: &Def, text: &str) -> bool {
    sql::create(def).contains(text)
}

enum FollowUp {
    Nothing,
    Recreate,
    Retype,
}

/// What an object must undergo when something it depends on is reshaped.
fn follow_up(def: &Def, reshape: Reshape) -> FollowUp {
    match (def.kind(), reshape) {
        (Kind::Column, Reshape::Enum) => FollowUp::Retype,
        (Kind::Column, _) => match def {
            Def::Column { spec, .. } if spec.generated.is_some() => FollowUp::Recreate,
            _ => FollowUp::Nothing,
        },
        (
            Kind::View
            | Kind::MaterializedView
            | Kind::Default
            | Kind::Trigger
            | Kind::Function
            | Kind::Policy,
            _,
        ) => FollowUp::Recreate,
        (Kind::Constraint | Kind::Index, Reshape::EnumColumn) => FollowUp::Recreate,
        (
            Kind::Constraint
            | Kind::Index
            | Kind::SequenceOwner
            | Kind::Comment
            | Kind::Partition
            | Kind::ReplicaIdentity
            | Kind::Grant,
            Reshape::Enum | Reshape::Gone,
        ) => FollowUp::Recreate,
        _ => FollowUp::Nothing,
    }
}

/// How an object that exists on both sides but differs is changed.
fn change(old: &Def, new: &Def) -> Action {
    match (old, new) {
        // Extensions ship update scripts forward only: an older version is made anew.
        (Def::Extension { version: a, .. }, Def::Extension { version: b, .. }) if is_older(b, a) => {
            Action::Recreate
        }
        (Def::Column { spec: a, .. }, Def::Column { spec: b, .. }) => {
            let regenerated = b.generated.is_some()
                && (a.generated != b.generated || a.generated_virtual != b.generated_virtual);
            // DROP EXPRESSION works on stored columns only: a virtual one is made anew.
            if regenerated || (a.generated_virtual && b.generated.is_none()) {
                Action::Recreate
            } else {
                Action::Alter
            }
        }
        (Def::Table { partition_by: a, .. }, Def::Table { partition_by: b, .. }) if a != b => {
            Action::Recreate
        }
        // ALTER POLICY cannot change the command or kind, nor take a clause away.
        (
            Def::Policy { permissive: p1, command: c1, using: u1, check: k1, .. },
            Def::Policy { permissive: p2, command: c2, using: u2, check: k2, .. },
        ) if p1 == p2 && c1 == c2 && (u1.is_none() || u2.is_some()) && (k1.is_none() || k2.is_some()) => {
            Action::Alter
        }
        (Def::Enum { labels: a, .. }, Def::Enum { labels: b, .. }) => {
            if is_subsequence(a, b) {
                Action::Alter
            } else {
                Action::RebuildEnum
            }
        }
        (
            Def::Function { arguments: a1, result: r1, procedure: p1, .. },
            Def::Function { arguments: a2, result: r2, procedure: p2, .. },
        ) if a1 == a2 && r1 == r2 && p1 == p2 => Action::Alter,
        (
            Def::Table { .. }
            | Def::Sequence { .. }
            | Def::SequenceOwner { .. }
            | Def::Default { .. }
            | Def::Comment { .. }
            | Def::Extension { .. }
            | Def::ReplicaIdentity { .. }
            | Def::Grant { .. }
            | Def::Schema { .. },
            _,
        ) => Action::Alter,
        _ => Action::Recreate,
    }
}

/// Whether dotted version `a` comes before `b` (`1.5` before `1.10`); `false` when either is not
/// made of numbers, and PostgreSQL's own update path decides.
fn is_older(a: &str, b: &str) -> bool {
    let parts = |v: &str| v.split('.').map(str::parse::<u64>).collect::<Result<Vec<_>, _>>();
    matches!((parts(a), parts(b)), (Ok(a), Ok(b)) if a < b)
}

fn is_subsequence(old: &[String], new: &[String]) -> bool {
    let mut rest = new.iter();
    old.iter().all(|label| rest.any(|l| l == label))
}

/// The statements that change `old` into `new` in place; `enums` tells whether a type name is an
/// enum on the old or the new side (enums convert to each other only through text).
fn alter(old: &Def, new: &Def, enums: &dyn Fn(&str) -> bool) -> Vec<Statement> {
    match (old, new) {
        (Def::Column { spec: a, .. }, Def::Column { table, name, spec: b, .. }) => {
            alter_column(table, name, a, b, enums)
        }
        (Def::Enum { labels: a, .. }, Def::Enum { name, labels: b }) => {
            let mut statements = Vec::new();
            for (i, label) in b.iter().enumerate() {
                if a.contains(label) {
                    continue;
                }
                let position = match i {
                    0 => b.iter().find(|l| a.contains(l)).map(|l| format!(" BEFORE {}", quote_literal(l))),
                    _ => Some(format!(" AFTER {}", quote_literal(&b[i - 1]))),
                };
                let mut statement = plain(format!(
                    "ALTER TYPE {name} ADD VALUE {}{};",
                    quote_literal(label),
                    position.unwrap_or_default()
                ));
                statement.notes.push(Note::Review(format!(
                    "{} can be used only once this migration has committed: a statement here that \
                     uses it fails, so move such a statement to the next migration",
                    quote_literal(label)
                )));
                statements.push(statement);
            }
            statements
        }
        _ => sql::alter(old, new).into_iter().map(plain).collect(),
    }
}

fn alter_column(
    table: &str,
    name: &str,
    a: &ColumnSpec,
    b: &ColumnSpec,
    enums: &dyn Fn(&str) -> bool,
) -> Vec<Statement> {
    let prefix = format!("ALTER TABLE {table} ALTER COLUMN {name}");
    let mut out = Vec::new();
    if a.identity.is_some() && b.identity.is_none() {
        out.push(plain(format!("{prefix} DROP IDENTITY;")));
    }
    if a.generated.is_some() && b.generated.is_none() {
        out.push(plain(format!("{prefix} DROP EXPRESSION;")));
    }
    if a.data_type != b.data_type || a.collation != b.collation {
        let collate = b.collation.as_ref().map(|c| format!(" COLLATE {c}")).unwrap_or_default();
        let mut statement = if sql::widens(&a.data_type, &b.data_type) {
            plain(format!("{prefix} TYPE {}{collate};", b.data_type))
        } else if enums(&a.data_type) && enums(&b.data_type) {
            plain(format!("{prefix} TYPE {}{collate} USING {name}::text::{};", b.data_type, b.data_type))
        } else {
            plain(format!("{prefix} TYPE {}{collate} USING {name}::{};", b.data_type, b.data_type))
        };
        if !sql::widens(&a.data_type, &b.data_type) {
            statement.notes.push(Note::Destructive(format!(
                "changes {table}.{name} from {} to {}: values that do not fit make this fail or are cut",
                a.data_type, b.data_type
            )));
        }
        out.push(statement);
    }
    if a.not_null && !b.not_null {
        out.push(plain(format!("{prefix} DROP NOT NULL;")));
    }
    if let (true, true, Some(old), Some(new)) = (a.not_null, b.not_null, &a.not_null_name, &b.not_null_name)
        && old != new
    {
        out.push(plain(format!("ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new};")));
    }
    if !a.not_null && b.not_null {
        let mut statement = match sql::named_not_null(b) {
            Some(constraint) => {
                plain(format!("ALTER TABLE {table} ADD CONSTRAINT {constraint} NOT NULL {name};"))
            }
            None => plain(format!("{prefix} SET NOT NULL;")),
        };
        statement.notes.push(Note::Review(format!("fails while a row of {table} holds NULL in {name}")));
        out.push(statement);
    }
    match (a.identity, b.identity) {
        (None, Some(kind)) => {
            out.push(plain(format!(
                "{prefix} ADD GENERATED {} AS IDENTITY{};",
                sql::identity_kind(kind),
                sql::identity_options(b)
            )));
            // The new sequence starts at 1: move it past the values already there.
            out.push(plain(format!(
                "SELECT setval(pg_get_serial_sequence({}, {}), max({name})) FROM {table} \
                 HAVING max({name}) IS NOT NULL;",
                quote_literal(table),
                quote_literal(&sql::unquote(name))
            )));
        }
        (Some(x), Some(y)) if x != y => {
            out.push(plain(format!("{prefix} SET GENERATED {};", sql::identity_kind(y))))
        }
        _ => {}
    }
    out.extend(sql::column_settings(table, name, Some(a), b).into_iter().map(plain));
    if let (Some(_), Some(_), Some(x), Some(y)) =
        (a.identity, b.identity, &a.identity_options, &b.identity_options)
    {
        let options = sql::changed_sequence_options(x, y);
        if y.min > x.min && y.increment > 0 {
            // A MINVALUE above the sequence's position fails: move a position below it up first.
            out.push(plain(format!(
                "SELECT setval(s, {}, false) FROM pg_get_serial_sequence({}, {}) AS s \
                 WHERE coalesce(pg_sequence_last_value(s::regclass), {}) < {};",
                y.min,
                quote_literal(table),
                quote_literal(&sql::unquote(name)),
                i64::MIN,
                y.min
            )));
        }
        if !options.is_empty() {
            out.push(plain(format!(
                "{prefix} {};",
                options.iter().map(|o| format!("SET {o}")).collect::<Vec<_>>().join(" ")
            )));
        }
    }
    out
}

fn plain(sql: String) -> Statement {
    Statement { sql, notes: Vec::new() }
}

/// Keys in dependency order (what a key depends on comes first), by `graph`'s edges between the
/// units `unit` maps keys to; ties broken by kind, then key. A cycle is broken in the same order.
fn topo(nodes: &BTreeSet<String>, graph: &Snapshot, unit: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let kind_of = |key: &str| graph.objects.get(key).map_or(Kind::Comment, |o| o.def.kind());
    let mut waiting_on: BTreeMap<&str, BTreeSet<String>> =
        nodes.iter().map(|n| (n.as_str(), BTreeSet::new())).collect();
    let mut dependents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, deps) in &graph.deps {
        let Some(from) = unit(key).filter(|u| nodes.contains(u)) else { continue };
        for dep in deps {
            let Some(to) = unit(dep).filter(|u| nodes.contains(u)) else { continue };
            if from != to && waiting_on.get_mut(from.as_str()).is_some_and(|w| w.insert(to.clone())) {
                dependents.entry(to).or_default().push(from.clone());
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<(Kind, String)>> = waiting_on
        .iter()
        .filter(|(_, w)| w.is_empty())
        .map(|(k, _)| Reverse((kind_of(k), (*k).to_owned())))
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    let mut placed = BTreeSet::new();
    while order.len() < nodes.len() {
        let next = match ready.pop() {
            Some(Reverse((_, key))) => key,
            // A cycle: take the first of what is left.
            None => {
                match nodes.iter().filter(|n| !placed.contains(*n)).min_by_key(|n| (kind_of(n), (*n).clone()))
                {
                    Some(key) => key.clone(),
                    None => break,
                }
            }
        };
        if !placed.insert(next.clone()) {
            continue;
        }
        for dependent in dependents.get(&next).into_iter().flatten() {
            if let Some(waiting) = waiting_on.get_mut(dependent.as_str()) {
                waiting.remove(&next);
                if waiting.is_empty() && !placed.contains(dependent) {
                    ready.push(Reverse((kind_of(dependent), dependent.clone())));
                }
            }
        }
        order.push(next);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::catalog::{Object, SequenceSpec};

    fn table(snapshot: &mut Snapshot, name: &str) {
        let def = Def::Table {
            name: format!("public.{name}"),
            unlogged: false,
            row_security: false,
            force_row_security: false,
            partition_by: None,
            options: Vec::new(),
        };
        snapshot
            .objects
            .insert(format!("table public.{name}"), Object { owner: None, inherited_from: None, def });
    }

    /// A nullable integer column with every setting at its default.
    fn integer() -> ColumnSpec {
        ColumnSpec {
            data_type: "integer".into(),
            collation: None,
            not_null: false,
            identity: None,
            generated: None,
            generated_virtual: false,
            identity_options: None,
            storage: None,
            type_storage: "PLAIN".into(),
            compression: None,
            statistics: None,
            not_null_name: None,
            not_null_name_is_default: true,
        }
    }

    fn depends(snapshot: &mut Snapshot, key: &str, on: &str) {
        snapshot.deps.entry(key.into()).or_default().insert(on.into());
    }

    #[test]
    fn what_is_used_is_made_first_and_dropped_last() {
        let mut to = Snapshot::default();
        table(&mut to, "orders");
        table(&mut to, "customers");
        let fk = Def::Constraint {
            table: "public.orders".into(),
            name: "orders_customer_fkey".into(),
            definition: "FOREIGN KEY (customer_id) REFERENCES public.customers(id)".into(),
        };
        let fk_key = "table constraint orders_customer_fkey on public.orders";
        to.objects.insert(
            fk_key.into(),
            Object { owner: Some("table public.orders".into()), inherited_from: None, def: fk },
        );
        depends(&mut to, fk_key, "table public.orders");
        depends(&mut to, fk_key, "table public.customers");
        let up: Vec<String> = diff(&Snapshot::default(), &to).into_iter().map(|s| s.sql).collect();
        assert_eq!(up.len(), 3);
        assert!(up[2].starts_with("ALTER TABLE public.orders ADD CONSTRAINT"), "{up:?}");
        let down: Vec<String> = diff(&to, &Snapshot::default()).into_iter().map(|s| s.sql).collect();
        // The constraint goes with its table: two DROP TABLEs, the referencing one first.
        assert_eq!(down, ["DROP TABLE public.orders;", "DROP TABLE public.customers;"]);
    }

    #[test]
    fn a_dependency_cycle_still_yields_every_statement() {
        let mut to = Snapshot::default();
        table(&mut to, "a");
        table(&mut to, "b");
        depends(&mut to, "table public.a", "table public.b");
        depends(&mut to, "table public.b", "table public.a");
        assert_eq!(diff(&Snapshot::default(), &to).len(), 2);
    }

    #[test]
    fn an_extension_goes_forward_by_update_and_back_by_drop_and_create() {
        let extension = |version: &str| {
            let mut snapshot = Snapshot::default();
            let def =
                Def::Extension { name: "citext".into(), schema: "public".into(), version: version.into() };
            snapshot
                .objects
                .insert("extension citext".into(), Object { owner: None, inherited_from: None, def });
            snapshot
        };
        let sql = |from: &str, to: &str| -> Vec<String> {
            diff(&extension(from), &extension(to)).into_iter().map(|s| s.sql).collect()
        };
        assert_eq!(sql("1.5", "1.6"), ["ALTER EXTENSION citext UPDATE TO '1.6';"]);
        assert_eq!(
            sql("1.6", "1.5"),
            [
                "DROP EXTENSION citext;",
                "CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public VERSION '1.5';"
            ]
        );
        assert!(sql("1.6", "1.6").is_empty());
        assert!(is_older("1.9", "1.10") && !is_older("1.10", "1.9") && !is_older("1.0beta", "1.0"));
        let down = diff(&extension("1.6"), &extension("1.5"));
        assert!(down[0].notes.iter().any(|n| matches!(n, Note::Destructive(_))), "{down:?}");
    }

    fn put(snapshot: &mut Snapshot, key: &str, owner: Option<&str>, inherited_from: Option<&str>, def: Def) {
        let object =
            Object { owner: owner.map(Into::into), inherited_from: inherited_from.map(Into::into), def };
        snapshot.objects.insert(key.into(), object);
        for dep in [owner, inherited_from].into_iter().flatten() {
            depends(snapshot, key, dep);
        }
    }

    fn sql_of(from: &Snapshot, to: &Snapshot) -> Vec<String> {
        diff(from, to).into_iter().map(|s| s.sql).collect()
    }

    fn policy(command: &str, using: &str, check: Option<&str>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        table(&mut snapshot, "doc");
        let def = Def::Policy {
            table: "public.doc".into(),
            name: "own".into(),
            permissive: true,
            command: command.into(),
            roles: vec!["PUBLIC".into()],
            using: Some(using.into()),
            check: check.map(Into::into),
        };
        put(&mut snapshot, "policy own on public.doc", Some("table public.doc"), None, def);
        snapshot
    }

    #[test]
    fn policies_are_altered_where_alter_policy_can_and_made_again_otherwise() {
        let (a, b) = (policy("ALL", "(owner = CURRENT_USER)", None), policy("ALL", "true", Some("(id > 0)")));
        assert_eq!(sql_of(&a, &b), ["ALTER POLICY own ON public.doc USING (true) WITH CHECK ((id > 0));"]);
        // A WITH CHECK taken away, or another command: dropped and made again.
        assert_eq!(sql_of(&b, &a).len(), 2);
        let select = policy("SELECT", "(owner = CURRENT_USER)", None);
        assert_eq!(
            sql_of(&a, &select),
            [
                "DROP POLICY own ON public.doc;",
                "CREATE POLICY own ON public.doc FOR SELECT USING ((owner = CURRENT_USER));"
            ]
        );
    }

    #[test]
    fn a_collation_is_made_again_when_its_definition_changes() {
        let collation = |locale: &str| {
            let mut snapshot = Snapshot::default();
            let def = Def::Collation {
                name: "public.sorted".into(),
                provider: "icu".into(),
                locale: Some(locale.into()),
                lc_collate: None,
                lc_ctype: None,
                deterministic: false,
                rules: None,
            };
            put(&mut snapshot, "collation public.sorted", None, None, def);
            snapshot
        };
        assert_eq!(
            sql_of(&collation("de-DE"), &collation("fr-FR")),
            [
                "DROP COLLATION public.sorted;",
                "CREATE COLLATION public.sorted (provider = icu, locale = 'fr-FR', deterministic = false);"
            ]
        );
    }

    #[test]
    fn replica_identity_is_set_and_reset_to_default() {
        let mut full = Snapshot::default();
        table(&mut full, "t");
        let def = Def::ReplicaIdentity { table: "public.t".into(), setting: "FULL".into() };
        put(&mut full, "replica identity of table public.t", Some("table public.t"), None, def);
        let mut plain_table = Snapshot::default();
        table(&mut plain_table, "t");
        assert_eq!(sql_of(&plain_table, &full), ["ALTER TABLE public.t REPLICA IDENTITY FULL;"]);
        assert_eq!(sql_of(&full, &plain_table), ["ALTER TABLE public.t REPLICA IDENTITY DEFAULT;"]);
    }

    #[test]
    fn identity_options_are_set_on_the_column() {
        let column = |increment: i64| {
            let mut snapshot = Snapshot::default();
            table(&mut snapshot, "t");
            let options = SequenceSpec {
                data_type: "integer".into(),
                start: 1,
                increment,
                min: 1,
                max: i64::from(i32::MAX),
                cache: 1,
                cycle: false,
            };
            let spec = ColumnSpec {
                not_null: true,
                identity: Some('a'),
                identity_options: Some(options),
                ..integer()
            };
            let def = Def::Column { table: "public.t".into(), name: "id".into(), position: 1, spec };
            put(&mut snapshot, "table column public.t.id", Some("table public.t"), None, def);
            snapshot
        };
        assert_eq!(
            sql_of(&column(1), &column(5)),
            ["ALTER TABLE public.t ALTER COLUMN id SET INCREMENT BY 5;"]
        );
    }

    #[test]
    fn grants_change_by_what_is_taken_and_what_is_given() {
        let grant = |privileges: &[&str], grantable: &[&str]| {
            let mut snapshot = Snapshot::default();
            table(&mut snapshot, "t");
            let list = |l: &[&str]| l.iter().map(|p| p.to_string()).collect::<Vec<_>>();
            let def = Def::Grant {
                target: "TABLE public.t".into(),
                column: None,
                grantee: "app".into(),
                privileges: list(privileges),
                grantable: list(grantable),
                default: Vec::new(),
            };
            put(&mut snapshot, "grant on table public.t to app", Some("table public.t"), None, def);
            snapshot
        };
        assert_eq!(
            sql_of(&grant(&["INSERT", "SELECT"], &[]), &grant(&["INSERT", "UPDATE"], &["UPDATE"])),
            [
                "REVOKE SELECT ON TABLE public.t FROM app;",
                "GRANT UPDATE ON TABLE public.t TO app WITH GRANT OPTION;"
            ]
        );
        let mut bare = Snapshot::default();
        table(&mut bare, "t");
        assert_eq!(sql_of(&grant(&["SELECT"], &[]), &bare), ["REVOKE SELECT ON TABLE public.t FROM app;"]);
    }

    #[test]
    fn default_privileges_are_given_and_taken_back() {
        let defaults = |schema: Option<&str>, on: &str, grantee: &str, privilege: &str, revoke: bool| {
            let mut snapshot = Snapshot::default();
            let def = Def::DefaultPrivileges {
                for_role: None,
                schema: schema.map(Into::into),
                on: on.into(),
                grantee: grantee.into(),
                privileges: vec![privilege.into()],
                grantable: Vec::new(),
                revoke,
            };
            put(&mut snapshot, "default privileges", None, None, def);
            snapshot
        };
        let none = Snapshot::default();
        let given = defaults(Some("public"), "TABLES", "app", "SELECT", false);
        assert_eq!(
            sql_of(&none, &given),
            ["ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO app;"]
        );
        assert_eq!(
            sql_of(&given, &none),
            ["ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM app;"]
        );
        // A default of PostgreSQL's taken away, and given back.
        let taken = defaults(None, "FUNCTIONS", "PUBLIC", "EXECUTE", true);
        assert_eq!(
            sql_of(&none, &taken),
            ["ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;"]
        );
        assert_eq!(sql_of(&taken, &none), ["ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;"]);
    }

    #[test]
    fn storage_parameters_are_set_and_reset() {
        let with = |options: &[&str]| {
            let mut snapshot = Snapshot::default();
            let def = Def::Table {
                name: "public.t".into(),
                unlogged: false,
                row_security: false,
                force_row_security: false,
                partition_by: None,
                options: options.iter().map(|o| o.to_string()).collect(),
            };
            put(&mut snapshot, "table public.t", None, None, def);
            snapshot
        };
        assert_eq!(
            sql_of(&with(&["autovacuum_enabled=false", "fillfactor=70"]), &with(&["fillfactor=90"])),
            ["ALTER TABLE public.t SET (fillfactor=90);", "ALTER TABLE public.t RESET (autovacuum_enabled);"]
        );
    }

    /// A partitioned `m` with partition `m_1`, and optionally an index on `m` with its copy on `m_1`.
    fn partitioned(with_index: bool) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let parent = Def::Table {
            name: "public.m".into(),
            unlogged: false,
            row_security: false,
            force_row_security: false,
            partition_by: Some("RANGE (at)".into()),
            options: Vec::new(),
        };
        put(&mut snapshot, "table public.m", None, None, parent);
        table(&mut snapshot, "m_1");
        snapshot.objects.get_mut("table public.m_1").unwrap().inherited_from = Some("table public.m".into());
        let partition =
            Def::Partition { table: "public.m_1".into(), parent: "public.m".into(), bound: "DEFAULT".into() };
        put(&mut snapshot, "partition of table public.m_1", Some("table public.m_1"), None, partition);
        depends(&mut snapshot, "partition of table public.m_1", "table public.m");
        if with_index {
            let index = Def::Index {
                name: "public.m_v".into(),
                definition: "CREATE INDEX m_v ON ONLY public.m USING btree (v)".into(),
            };
            put(&mut snapshot, "index public.m_v", Some("table public.m"), None, index);
            let copy = Def::Index {
                name: "public.m_1_v_idx".into(),
                definition: "CREATE INDEX m_1_v_idx ON public.m_1 USING btree (v)".into(),
            };
            put(
                &mut snapshot,
                "index public.m_1_v_idx",
                Some("table public.m_1"),
                Some("index public.m_v"),
                copy,
            );
            depends(&mut snapshot, "partition of table public.m_1", "index public.m_1_v_idx");
        }
        snapshot
    }

    #[test]
    fn a_partitioned_index_is_made_on_only_its_table_and_attached_to_by_each_partition() {
        assert_eq!(
            sql_of(&partitioned(false), &partitioned(true)),
            [
                "CREATE INDEX m_v ON ONLY public.m USING btree (v);",
                "CREATE INDEX m_1_v_idx ON public.m_1 USING btree (v);",
                "ALTER INDEX public.m_v ATTACH PARTITION public.m_1_v_idx;"
            ]
        );
        // Dropping the parent's index drops its copies.
        assert_eq!(sql_of(&partitioned(true), &partitioned(false)), ["DROP INDEX public.m_v;"]);
    }

    #[test]
    fn a_new_partition_gets_its_copies_before_it_is_attached() {
        let mut parent_only = partitioned(true);
        for key in ["table public.m_1", "partition of table public.m_1", "index public.m_1_v_idx"] {
            parent_only.objects.remove(key);
            parent_only.deps.remove(key);
        }
        let up = sql_of(&parent_only, &partitioned(true));
        assert_eq!(up.len(), 3, "{up:?}");
        assert!(
            up[1].starts_with("CREATE INDEX m_1_v_idx")
                && up[2].contains("ATTACH PARTITION public.m_1 DEFAULT"),
            "{up:?}"
        );
    }

    #[test]
    fn a_column_a_child_keeps_is_dropped_from_only_its_parent() {
        let column = |table: &str| Def::Column {
            table: format!("public.{table}"),
            name: "b".into(),
            position: 1,
            spec: integer(),
        };
        let family = |parent_has_b: bool| {
            let mut snapshot = Snapshot::default();
            table(&mut snapshot, "p");
            table(&mut snapshot, "c");
            let inherits = Def::Inherits { table: "public.c".into(), parent: "public.p".into() };
            put(
                &mut snapshot,
                "inheritance of table public.c from table public.p",
                Some("table public.c"),
                None,
                inherits,
            );
            let original = parent_has_b.then_some("table column public.p.b");
            if let Some(key) = original {
                put(&mut snapshot, key, Some("table public.p"), None, column("p"));
            }
            put(&mut snapshot, "table column public.c.b", Some("table public.c"), original, column("c"));
            snapshot
        };
        let up = sql_of(&family(true), &family(false));
        assert_eq!(up, ["ALTER TABLE ONLY public.p DROP COLUMN b;"]);
    }

    #[test]
    fn tables_pointing_at_each_other_lose_their_foreign_keys_before_they_are_dropped() {
        let mut both = Snapshot::default();
        for (name, other) in [("a", "b"), ("b", "a")] {
            table(&mut both, name);
            let key = format!("table constraint {name}_fk on public.{name}");
            let def = Def::Constraint {
                table: format!("public.{name}"),
                name: format!("{name}_fk"),
                definition: format!("FOREIGN KEY (x) REFERENCES public.{other}(id)"),
            };
            put(&mut both, &key, Some(&format!("table public.{name}")), None, def);
            depends(&mut both, &key, &format!("table public.{other}"));
        }
        let down = sql_of(&both, &Snapshot::default());
        assert_eq!(
            down,
            [
                "ALTER TABLE public.a DROP CONSTRAINT a_fk;",
                "ALTER TABLE public.b DROP CONSTRAINT b_fk;",
                "DROP TABLE public.b;",
                "DROP TABLE public.a;"
            ]
        );
    }

    #[test]
    fn enum_values_added_in_order_are_altered_in_place() {
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_subsequence(&labels(&["a", "c"]), &labels(&["a", "b", "c"])));
        assert!(!is_subsequence(&labels(&["a", "c"]), &labels(&["c", "a"])));
        assert!(!is_subsequence(&labels(&["a", "c"]), &labels(&["a"])));
    }
}
