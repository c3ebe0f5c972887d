//! The prepare corpus for the kinds that teams on managed platforms rely on: row-level security
//! policies, declarative partitioning, collations, identity options, REPLICA IDENTITY, and the
//! cases an earlier scoring found wrong (each a minimal pair). Every case runs the whole round
//! trip of `schema::round_trip`: prepare, up by setup, down, rollback, each compared by catalog.

macro_rules! cases {
    ($($name:ident: $from:expr => $to:expr;)*) => {
        $(#[test] fn $name() { crate::schema::round_trip($from, $to); })*
    };
}

/// A table and its row-level security, the start of each policy case.
const SECURED: &str = "CREATE TABLE doc (id int PRIMARY KEY, owner text, body text, public bool);
    ALTER TABLE doc ENABLE ROW LEVEL SECURITY;";

/// A range-partitioned table with two partitions and a default one.
const MEASURES: &str =
    "CREATE TABLE m (id int NOT NULL, at date NOT NULL, v int DEFAULT 0) PARTITION BY RANGE (at);
    CREATE TABLE m_2025 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE m_2026 PARTITION OF m FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');";

fn with(base: &str, more: &str) -> String {
    format!("{base}\n{more}")
}

mod policies {
    use super::*;

    cases! {
        policy_added:
            SECURED => &with(SECURED, "CREATE POLICY own ON doc USING (owner = current_user);");
        policy_dropped:
            &with(SECURED, "CREATE POLICY own ON doc USING (owner = current_user);") => SECURED;
        policy_using_changed:
            &with(SECURED, "CREATE POLICY own ON doc USING (owner = current_user);") =>
            &with(SECURED, "CREATE POLICY own ON doc USING (owner = current_user OR public);");
        policy_roles_changed:
            &with(SECURED, "CREATE POLICY own ON doc TO pg_monitor USING (true);") =>
            &with(SECURED, "CREATE POLICY own ON doc TO pg_monitor, pg_read_all_stats USING (true);");
        policy_given_to_public_again:
            &with(SECURED, "CREATE POLICY own ON doc TO pg_monitor USING (true);") =>
            &with(SECURED, "CREATE POLICY own ON doc USING (true);");
        policy_command_changed:
            &with(SECURED, "CREATE POLICY w ON doc FOR INSERT WITH CHECK (owner = current_user);") =>
            &with(SECURED, "CREATE POLICY w ON doc FOR UPDATE USING (true) WITH CHECK (owner = current_user);");
        policy_check_removed:
            &with(SECURED, "CREATE POLICY w ON doc FOR UPDATE USING (true) WITH CHECK (id > 0);") =>
            &with(SECURED, "CREATE POLICY w ON doc FOR UPDATE USING (true);");
        policy_made_restrictive:
            &with(SECURED, "CREATE POLICY p ON doc USING (NOT public);") =>
            &with(SECURED, "CREATE POLICY p ON doc AS RESTRICTIVE USING (NOT public);");
        policy_on_a_new_table_with_forced_security:
            "CREATE TABLE other (id int);" =>
            "CREATE TABLE other (id int); CREATE TABLE note (id int, owner text);
             ALTER TABLE note ENABLE ROW LEVEL SECURITY; ALTER TABLE note FORCE ROW LEVEL SECURITY;
             CREATE POLICY mine ON note FOR SELECT USING (owner = current_user);
             CREATE POLICY add ON note FOR INSERT WITH CHECK (owner = current_user);";
        policy_over_a_column_whose_type_changes:
            &with(SECURED, "CREATE POLICY own ON doc USING (owner = current_user);") =>
            "CREATE TABLE doc (id int PRIMARY KEY, owner varchar(63), body text, public bool);
             ALTER TABLE doc ENABLE ROW LEVEL SECURITY; CREATE POLICY own ON doc USING (owner = current_user);";
        policy_calling_a_function:
            SECURED =>
            &with(SECURED, "CREATE FUNCTION visible(o text) RETURNS bool LANGUAGE sql STABLE AS $$ SELECT o = current_user $$;
                            CREATE POLICY own ON doc USING (visible(owner));");
    }
}

mod partitions {
    use super::*;

    cases! {
        range_partitioned_table_added:
            "CREATE TABLE t (id int);" => &with("CREATE TABLE t (id int);", MEASURES);
        list_partitioned_table_added:
            "CREATE TABLE t (id int);" =>
            "CREATE TABLE t (id int); CREATE TABLE orders (id bigint NOT NULL, region text NOT NULL) PARTITION BY LIST (region);
             CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('de', 'fr');
             CREATE TABLE orders_us PARTITION OF orders FOR VALUES IN ('us');";
        hash_partitioned_table_added:
            "CREATE TABLE t (id int);" =>
            "CREATE TABLE t (id int); CREATE TABLE events (id bigint NOT NULL PRIMARY KEY, kind text) PARTITION BY HASH (id);
             CREATE TABLE events_0 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 0);
             CREATE TABLE events_1 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 1);";
        partition_added:
            MEASURES => &with(MEASURES, "CREATE TABLE m_2027 PARTITION OF m FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');");
        default_partition_added:
            MEASURES => &with(MEASURES, "CREATE TABLE m_other PARTITION OF m DEFAULT;");
        partition_dropped:
            &with(MEASURES, "CREATE TABLE m_2027 PARTITION OF m FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');") => MEASURES;
        partition_detached_into_a_table_of_its_own:
            &with(MEASURES, "CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');") =>
            &with(MEASURES, "CREATE TABLE m_2024 (id int NOT NULL, at date NOT NULL, v int DEFAULT 0);");
        partition_bound_changed:
            &with(MEASURES, "CREATE TABLE m_2027 PARTITION OF m FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');") =>
            &with(MEASURES, "CREATE TABLE m_2027 PARTITION OF m FOR VALUES FROM ('2027-01-01') TO ('2029-01-01');");
        sub_partitioned_partition_added:
            MEASURES =>
            &with(MEASURES, "CREATE TABLE m_2027 PARTITION OF m FOR VALUES FROM ('2027-01-01') TO ('2028-01-01') PARTITION BY HASH (id);
                             CREATE TABLE m_2027_a PARTITION OF m_2027 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
                             CREATE TABLE m_2027_b PARTITION OF m_2027 FOR VALUES WITH (MODULUS 2, REMAINDER 1);");
        regular_table_turned_partitioned:
            "CREATE TABLE m (id int NOT NULL, at date NOT NULL, v int DEFAULT 0);" => MEASURES;
        index_added_to_a_partitioned_table:
            MEASURES => &with(MEASURES, "CREATE INDEX m_v ON m (v);");
        index_added_by_name_on_each_partition:
            MEASURES =>
            &with(MEASURES, "CREATE INDEX m_at ON ONLY m (at); CREATE INDEX m_2025_at_named ON m_2025 (at);
                             CREATE INDEX m_2026_at_named ON m_2026 (at);
                             ALTER INDEX m_at ATTACH PARTITION m_2025_at_named; ALTER INDEX m_at ATTACH PARTITION m_2026_at_named;");
        index_of_a_partitioned_table_changed:
            &with(MEASURES, "CREATE INDEX m_v ON m (v);") => &with(MEASURES, "CREATE INDEX m_v ON m (v, id);");
        partition_added_under_an_index_and_key:
            &with(MEASURES, "CREATE INDEX m_v ON m (v); ALTER TABLE m ADD PRIMARY KEY (id, at);") =>
            &with(MEASURES, "CREATE INDEX m_v ON m (v); ALTER TABLE m ADD PRIMARY KEY (id, at);
                             CREATE TABLE m_2027 PARTITION OF m FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');");
        key_added_to_a_partitioned_table:
            MEASURES => &with(MEASURES, "ALTER TABLE m ADD CONSTRAINT m_key UNIQUE (id, at);");
        key_dropped_from_a_partitioned_table:
            &with(MEASURES, "ALTER TABLE m ADD PRIMARY KEY (id, at);") => MEASURES;
        check_added_to_a_partitioned_table:
            MEASURES => &with(MEASURES, "ALTER TABLE m ADD CONSTRAINT m_v_positive CHECK (v >= 0);");
        partition_added_under_a_check:
            &with(MEASURES, "ALTER TABLE m ADD CONSTRAINT m_v_positive CHECK (v >= 0);") =>
            &with(MEASURES, "ALTER TABLE m ADD CONSTRAINT m_v_positive CHECK (v >= 0);
                             CREATE TABLE m_2027 PARTITION OF m FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');");
        foreign_key_added_from_a_partitioned_table:
            &with(MEASURES, "CREATE TABLE sensor (id int PRIMARY KEY);") =>
            &with(MEASURES, "CREATE TABLE sensor (id int PRIMARY KEY); ALTER TABLE m ADD FOREIGN KEY (v) REFERENCES sensor;");
        trigger_added_to_and_dropped_from_a_partitioned_table:
            &with(MEASURES, "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;") =>
            &with(MEASURES, "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
                             CREATE TRIGGER m_noop BEFORE INSERT ON m FOR EACH ROW EXECUTE FUNCTION noop();");
        partition_with_parent_trigger_detached:
            &with(MEASURES, "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
                             CREATE TRIGGER m_noop BEFORE INSERT ON m FOR EACH ROW EXECUTE FUNCTION noop();
                             CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');") =>
            &with(MEASURES, "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
                             CREATE TRIGGER m_noop BEFORE INSERT ON m FOR EACH ROW EXECUTE FUNCTION noop();
                             CREATE TABLE m_2024 (id int NOT NULL, at date NOT NULL, v int DEFAULT 0);
                             CREATE TRIGGER m_noop BEFORE INSERT ON m_2024 FOR EACH ROW EXECUTE FUNCTION noop();");
        column_added_to_a_partitioned_table:
            MEASURES => &with(MEASURES, "ALTER TABLE m ADD COLUMN note text NOT NULL DEFAULT '';");
        column_of_a_partitioned_table_retyped:
            MEASURES => &MEASURES.replace("v int DEFAULT 0", "v bigint DEFAULT 0");
        partition_with_a_statistics_target_of_its_own:
            MEASURES => &with(MEASURES, "ALTER TABLE m_2025 ALTER COLUMN v SET STATISTICS 200;");
        partitioned_table_dropped:
            &with(MEASURES, "CREATE TABLE keep (id int);") => "CREATE TABLE keep (id int);";
    }
}

mod collations {
    cases! {
        collation_added_with_a_column_using_it:
            "CREATE TABLE t (id int);" =>
            "CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
             CREATE TABLE t (id int, name text COLLATE nocase);";
        collation_dropped:
            "CREATE COLLATION c_bytes (provider = libc, lc_collate = 'C', lc_ctype = 'C'); CREATE TABLE t (id int);" =>
            "CREATE TABLE t (id int);";
        column_collation_changed:
            "CREATE COLLATION german (provider = icu, locale = 'de-DE'); CREATE TABLE t (name text COLLATE german);" =>
            "CREATE COLLATION german (provider = icu, locale = 'de-DE'); CREATE TABLE t (name text COLLATE \"C\");";
        collation_redefined:
            "CREATE COLLATION sorted (provider = icu, locale = 'de-DE');" =>
            "CREATE COLLATION sorted (provider = icu, locale = 'fr-FR');";
        collation_in_its_own_schema:
            "CREATE TABLE t (id int);" =>
            "CREATE SCHEMA text_rules; CREATE COLLATION text_rules.numeric (provider = icu, locale = 'en-u-kn-true');
             CREATE TABLE t (id int, code text COLLATE text_rules.numeric);";
    }
}

mod identity_and_replica_identity {
    cases! {
        identity_options_kept_when_made:
            "CREATE TABLE t (id int);" =>
            "CREATE TABLE t (id int); CREATE TABLE ticket (id int GENERATED ALWAYS AS IDENTITY (START WITH 1000 INCREMENT BY 10 CACHE 20));";
        identity_options_changed:
            "CREATE TABLE ticket (id bigint GENERATED BY DEFAULT AS IDENTITY);" =>
            "CREATE TABLE ticket (id bigint GENERATED BY DEFAULT AS IDENTITY (MINVALUE 5 MAXVALUE 500000 START WITH 5 CYCLE));";
        identity_minimum_raised_on_a_quoted_column:
            "CREATE TABLE \"Ticket\" (\"Id\" bigint GENERATED BY DEFAULT AS IDENTITY);" =>
            "CREATE TABLE \"Ticket\" (\"Id\" bigint GENERATED BY DEFAULT AS IDENTITY (MINVALUE 10 START WITH 10));";
        identity_added_with_options:
            "CREATE TABLE ticket (id int NOT NULL);" =>
            "CREATE TABLE ticket (id int GENERATED BY DEFAULT AS IDENTITY (START WITH 50 INCREMENT BY 2));";
        replica_identity_full:
            "CREATE TABLE t (id int, v text);" => "CREATE TABLE t (id int, v text); ALTER TABLE t REPLICA IDENTITY FULL;";
        replica_identity_nothing_to_full:
            "CREATE TABLE t (id int); ALTER TABLE t REPLICA IDENTITY NOTHING;" =>
            "CREATE TABLE t (id int); ALTER TABLE t REPLICA IDENTITY FULL;";
        replica_identity_using_a_new_index:
            "CREATE TABLE t (id int NOT NULL, v text);" =>
            "CREATE TABLE t (id int NOT NULL, v text); CREATE UNIQUE INDEX t_id ON t (id); ALTER TABLE t REPLICA IDENTITY USING INDEX t_id;";
        replica_identity_using_a_key:
            "CREATE TABLE t (id int NOT NULL, code text NOT NULL, PRIMARY KEY (id));" =>
            "CREATE TABLE t (id int NOT NULL, code text NOT NULL, PRIMARY KEY (id), CONSTRAINT t_code UNIQUE (code));
             ALTER TABLE t REPLICA IDENTITY USING INDEX t_code;";
    }
}

/// Each case an earlier scoring found wrong or missed, as a minimal pair.
mod found_wrong_before {
    use super::*;

    cases! {
        extension_declared_at_an_old_version:
            "CREATE TABLE t (id int);" => "CREATE EXTENSION pg_trgm VERSION '1.3'; CREATE TABLE t (id int);";
        extension_updated_one_version:
            "CREATE EXTENSION citext VERSION '1.5';" => "CREATE EXTENSION citext VERSION '1.6';";
        identity_increment_changed:
            "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY);" =>
            "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY (INCREMENT BY 5));";
        replica_identity_changed:
            "CREATE TABLE t (id int);" => "CREATE TABLE t (id int); ALTER TABLE t REPLICA IDENTITY FULL;";
        partitioned_parent_key_dropped:
            &with(MEASURES, "ALTER TABLE m ADD CONSTRAINT m_pk PRIMARY KEY (id, at);") => MEASURES;
        partitioned_parent_trigger_dropped:
            &with(MEASURES, "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
                             CREATE TRIGGER m_noop BEFORE INSERT ON m FOR EACH ROW EXECUTE FUNCTION noop();") =>
            &with(MEASURES, "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;");
        tables_pointing_at_each_other:
            "CREATE TABLE keep (id int);" =>
            "CREATE TABLE keep (id int); CREATE TABLE a (id int PRIMARY KEY, b_id int); CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);
             ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b;";
        three_tables_in_a_ring_dropped:
            "CREATE TABLE a (id int PRIMARY KEY, c_id int); CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);
             CREATE TABLE c (id int PRIMARY KEY, b_id int REFERENCES b); ALTER TABLE a ADD FOREIGN KEY (c_id) REFERENCES c;
             CREATE TABLE keep (id int);" =>
            "CREATE TABLE keep (id int);";
    }
}

mod grants {
    cases! {
        grant_added:
            "CREATE TABLE t (id int);" => "CREATE TABLE t (id int); GRANT SELECT, INSERT ON t TO pg_monitor;";
        grant_changed_from_select_to_update:
            "CREATE TABLE t (id int); GRANT SELECT, INSERT ON t TO pg_monitor;" =>
            "CREATE TABLE t (id int); GRANT UPDATE, INSERT ON t TO pg_monitor;";
        grant_given_with_grant_option:
            "CREATE TABLE t (id int); GRANT SELECT ON t TO pg_monitor;" =>
            "CREATE TABLE t (id int); GRANT SELECT ON t TO pg_monitor WITH GRANT OPTION; GRANT DELETE ON t TO pg_read_all_stats;";
        column_grant_added:
            "CREATE TABLE t (id int, secret text);" =>
            "CREATE TABLE t (id int, secret text); GRANT SELECT (id), UPDATE (id) ON t TO pg_monitor;";
        function_taken_from_public:
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';" =>
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';
             REVOKE EXECUTE ON FUNCTION f() FROM PUBLIC; GRANT EXECUTE ON FUNCTION f() TO pg_monitor;";
        schema_and_sequence_granted:
            "CREATE SCHEMA app; CREATE SEQUENCE app.n;" =>
            "CREATE SCHEMA app; CREATE SEQUENCE app.n; GRANT USAGE ON SCHEMA app TO pg_monitor;
             GRANT USAGE, SELECT ON SEQUENCE app.n TO pg_monitor;";
        grant_on_a_view_made_again:
            "CREATE TABLE t (id int, v int); CREATE VIEW w AS SELECT id, v FROM t; GRANT SELECT ON w TO pg_monitor;" =>
            "CREATE TABLE t (id int, v bigint); CREATE VIEW w AS SELECT id, v FROM t; GRANT SELECT ON w TO pg_monitor;";
        default_privileges_granted_in_a_schema:
            "CREATE TABLE t (id int);" =>
            "CREATE TABLE t (id int); ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, UPDATE ON TABLES TO pg_monitor;";
        default_privileges_taken_from_public:
            "CREATE TABLE t (id int);" =>
            "CREATE TABLE t (id int); ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;";
        default_privileges_changed:
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO pg_monitor;" =>
            "ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT ON TABLES TO pg_monitor;";
    }
}

mod inheritance {
    use super::with;
    use crate::schema::{Dump, round_trip_with};

    /// A parent and a child that inherits all its columns.
    const FAMILY: &str = "CREATE TABLE base (id int NOT NULL, name text CHECK (name <> ''));
        CREATE TABLE child (extra text) INHERITS (base);";

    cases! {
        inheriting_table_added:
            "CREATE TABLE base (id int NOT NULL, name text CHECK (name <> ''));" => FAMILY;
        child_declaring_an_inherited_column_added:
            "CREATE TABLE base (id int NOT NULL, name text);" =>
            "CREATE TABLE base (id int NOT NULL, name text); CREATE TABLE child (name text, extra text) INHERITS (base);";
        column_added_to_a_parent:
            FAMILY => &FAMILY.replace("name text CHECK", "added int DEFAULT 1, name text CHECK");

        inherited_column_dropped_everywhere:
            FAMILY => "CREATE TABLE base (id int NOT NULL); CREATE TABLE child (extra text) INHERITS (base);";
        inherited_column_made_not_null_in_the_child_only:
            FAMILY => &with(FAMILY, "ALTER TABLE child ALTER COLUMN name SET NOT NULL;");
        check_added_to_a_parent:
            FAMILY => &FAMILY.replace("INHERITS (base);", "INHERITS (base); ALTER TABLE base ADD CONSTRAINT id_positive CHECK (id > 0);");
        column_of_a_parent_retyped:
            FAMILY => &FAMILY.replace("id int NOT NULL", "id bigint NOT NULL");
        existing_table_starts_inheriting:
            "CREATE TABLE base (id int); CREATE TABLE other (id int, x int);" =>
            "CREATE TABLE base (id int); CREATE TABLE other (id int, x int); ALTER TABLE other INHERIT base;";
        table_with_two_parents_added:
            "CREATE TABLE a (x int); CREATE TABLE b (y int);" =>
            "CREATE TABLE a (x int); CREATE TABLE b (y int); CREATE TABLE ab (z int) INHERITS (a, b);";
    }

    /// The down's INHERIT leaves the child's `id` its own (see `Dump::UpOnly`).
    #[test]
    fn parent_dropped_and_child_kept() {
        round_trip_with(
            "CREATE TABLE base (id int); CREATE TABLE child (x int) INHERITS (base);",
            "CREATE TABLE child (id int, x int);",
            Dump::UpOnly,
        );
    }

    /// The up keeps the child's values with ALTER TABLE ONLY; the down's re-added parent column
    /// merges with the child's own (see `Dump::UpOnly`).
    #[test]
    fn inherited_column_dropped_from_the_parent_kept_by_the_child() {
        let (up, _) = round_trip_with(
            FAMILY,
            "CREATE TABLE base (id int NOT NULL); CREATE TABLE child (name text CHECK (name <> ''), extra text) INHERITS (base);",
            Dump::UpOnly,
        );
        assert!(up.contains("ALTER TABLE ONLY public.base DROP COLUMN name;"), "{up}");
    }
}

mod storage {
    cases! {
        table_storage_parameters_set_changed_and_reset:
            "CREATE TABLE t (id int) WITH (fillfactor = 70, autovacuum_enabled = false);" =>
            "CREATE TABLE t (id int) WITH (fillfactor = 90, toast_tuple_target = 256);";
        table_made_with_storage_parameters:
            "CREATE TABLE a (id int);" => "CREATE TABLE a (id int); CREATE TABLE b (id int) WITH (fillfactor = 50);";
        column_storage_compression_and_statistics:
            "CREATE TABLE t (id int, body text, n int);" =>
            "CREATE TABLE t (id int, body text, n int); ALTER TABLE t ALTER COLUMN body SET STORAGE EXTERNAL;
             ALTER TABLE t ALTER COLUMN body SET COMPRESSION pglz; ALTER TABLE t ALTER COLUMN n SET STATISTICS 500;";
        column_added_with_its_settings:
            "CREATE TABLE t (id int);" =>
            "CREATE TABLE t (id int, doc text); ALTER TABLE t ALTER COLUMN doc SET STORAGE MAIN;
             ALTER TABLE t ALTER COLUMN doc SET STATISTICS 50;";
    }
}
