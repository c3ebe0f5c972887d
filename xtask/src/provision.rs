//! `--provision`: install PostgreSQL's server binaries when no engine can serve (Debian, as root).

use anyhow::{Context, Result, bail};

/// Installs Debian's `postgresql` package with apt. Only as root on a machine with apt-get; anywhere
/// else it stops with the command that would do it.
pub fn install_postgresql() -> Result<()> {
    if !crate::os::is_root() || which::which("apt-get").is_err() {
        bail!(
            "--provision installs PostgreSQL with apt-get as root on Debian/Ubuntu only; here, install it \
             yourself:\n{}",
            crate::engine::INSTALL_HINT
        );
    }
    eprintln!("provision: installing PostgreSQL server binaries (apt-get install postgresql)");
    let apt = |args: &[&str]| -> Result<()> {
        let status = duct::cmd("apt-get", args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout_to_stderr()
            .unchecked()
            .run()
            .context("run apt-get")?
            .status;
        if !status.success() {
            bail!("apt-get {} failed ({status}); see its output above", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-q"])?;
    apt(&["install", "-y", "-q", "postgresql"])
}
