//! Integration tests: the real xtask binary against real servers (a native cluster, a container on a
//! real Docker engine, and a native cluster addressed only by URL), with the real git and psql.
//! Each test has its own project, port and data directory, so tests run in parallel.

mod harness;

mod backup;
mod branches;
mod corpus;
mod developers;
mod docker;
mod drift;
mod engine_faults;
mod errors;
mod external;
mod faults;
mod hooks;
mod hostile;
mod lifecycle;
mod load;
mod migrate;
mod native;
mod redis;
mod schema;
mod schema_kinds;
mod secrets;
mod security_files;
mod security_local;
mod security_restore;
mod security_roles;
mod services;
mod sqlx_compat;
mod templates;
mod tls;
mod versions;

/// The scenarios every engine that owns its server must pass, once per engine.
macro_rules! on_both_engines {
    ($($name:ident => $scenario:path),* $(,)?) => {
        mod native_engine {
            $(#[test] fn $name() { $scenario("native") })*
        }
        mod docker_engine {
            $(#[test] fn $name() { $scenario("docker") })*
        }
    };
}

on_both_engines! {
    life_cycle => crate::lifecycle::server_life_cycle,
    adversarial_branches => crate::lifecycle::adversarial_branches,
    endpoint_and_connect => crate::lifecycle::endpoint_and_connect,
    password_is_redacted => crate::lifecycle::password_is_redacted,
    concurrent_setups => crate::lifecycle::concurrent_setups,
    migrate_apply_reapply_rollback => crate::migrate::apply_reapply_rollback,
    migrate_edited_missing_out_of_order => crate::migrate::edited_missing_and_out_of_order,
    migrate_failure_leaves_nothing => crate::migrate::failing_migration_leaves_nothing,
    migrate_no_transaction => crate::migrate::no_transaction_index_concurrently,
    migrate_concurrently => crate::migrate::concurrent_migrate,
    seeds => crate::migrate::seeds,
    sqlx_interop => crate::migrate::sqlx_interop,
    services_least_privilege => crate::services::least_privilege,
    services_extensions => crate::services::extensions,
    services_two_branches => crate::services::two_branches,
    services_env_file_and_secrets => crate::services::env_file_and_secrets,
    services_roles_heal => crate::services::roles_heal_and_are_never_taken_over,
    services_declared_reads => crate::services::declared_reads,
    services_role_dropped_by_hand => crate::services::role_dropped_by_hand,
    services_concurrent_password_renewal => crate::services::concurrent_password_renewal,
    services_examples_pass_their_tests => crate::services::example_services,
    schema_edit_prepare_migrate_check => crate::schema::edit_prepare_migrate_check,
    templates_copies => crate::templates::copies_from_templates,
    templates_setup_from => crate::templates::setup_from_another_branch,
    prune_gone_branches => crate::branches::prune_gone_branches,
    leftovers_swept => crate::load::leftovers_of_ended_runs_are_swept,
    backup_round_trip => crate::backup::round_trip,
    security_restore_runs_as_the_role => crate::security_restore::restore_runs_as_the_role,
    faults_kill_during_migrate => crate::faults::kill_during_migrate,
    faults_kill_during_seed => crate::faults::kill_during_seed,
    faults_kill_during_template_build => crate::faults::kill_during_template_build,
    faults_kill_during_copy => crate::faults::kill_during_copy,
    faults_server_killed_during_migrate => crate::faults::server_killed_during_migrate,
    security_planted_unnest => crate::security_roles::planted_unnest_does_not_run_as_admin,
    security_migrations_cannot_reset_role => crate::security_roles::migrations_cannot_reset_role,
    security_admin_named_schema => crate::security_roles::admin_named_schema_is_not_read_as_admin,
    security_roles_cannot_hold_up_setup => crate::security_roles::roles_cannot_hold_up_setup,
    security_templates_cannot_be_poisoned => crate::security_roles::templates_cannot_be_poisoned,
    sqlx_odd_names => crate::sqlx_compat::odd_names_are_taken_over_both_ways,
    sqlx_own_transaction_files => crate::sqlx_compat::own_transaction_files_run_as_sqlx_runs_them,
    sqlx_no_transaction_warned => crate::sqlx_compat::no_transaction_files_sqlx_cannot_apply_are_warned_about,
    sqlx_session_settings => crate::sqlx_compat::session_settings_are_sqlx_s,
    sqlx_failures_located_once => crate::sqlx_compat::failures_are_located_without_a_second_run,
    sqlx_rollback_part_way => crate::sqlx_compat::rollback_that_stops_part_way_says_what_stayed,
    redis_isolation_and_life_cycle => crate::redis::isolation_and_life_cycle,
    redis_kill_during_setup => crate::redis::kill_during_setup,
    redis_kill_at_any_moment => crate::redis::kill_at_any_moment,
    redis_busy_port => crate::redis::busy_port,
}
