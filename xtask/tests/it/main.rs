//! Integration tests: the real xtask binary against real servers (a native cluster, a container on a
//! real Docker engine, and a native cluster addressed only by URL), with the real git and psql.
//! Each test has its own project, port and data directory, so tests run in parallel.

mod harness;

mod docker;
mod errors;
mod external;
mod lifecycle;
mod migrate;
mod native;
