//! `binaries`: fetch the managed PostgreSQL binaries ahead of time and say where they are.

use anyhow::Result;

use crate::binaries;
use crate::workspace::Ctx;

pub fn binaries(ctx: &Ctx, major: Option<u32>) -> Result<()> {
    let major = major.or(ctx.config.postgres).unwrap_or(binaries::DEFAULT_MAJOR);
    let server = binaries::server(major)?;
    let clients = binaries::clients()?;
    println!("server {major} {}", server.display());
    println!("clients {} {}", binaries::CLIENTS_MAJOR, clients.display());
    Ok(())
}
