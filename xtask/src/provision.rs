//! Provisioning: install and start what a run needs (PostgreSQL's server binaries, a Docker engine, the
//! test image) where this tool may: with `--provision` or in CI, as root on Debian.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::packages::apt_install;

const DOCKERD_LOG: &str = "/tmp/xtask-ci-dockerd.log";
const DOCKERD_START_TIMEOUT: Duration = Duration::from_secs(60);
const DOCKERD_STOP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);

/// Whether this run may install packages, start a Docker engine and build images: with CI=true
/// (any of "true"/"1", case-insensitive) or --provision. (Being root on Debian is checked where it matters.)
pub fn may_provision(flag: bool) -> bool {
    flag || ci_allows(std::env::var("CI").ok().as_deref())
}

fn ci_allows(value: Option<&str>) -> bool {
    value.map(str::trim).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// PostgreSQL's server binaries (initdb, pg_ctl): installed with apt when missing and `may`. Returns
/// what was done, if anything.
pub fn ensure_postgres_binaries(may: bool) -> Result<Option<String>> {
    const PACKAGES: [&str; 2] = ["postgresql", "postgresql-contrib"];
    if postgres_binaries_found()? {
        return Ok(None);
    }
    if !may {
        bail!(
            "PostgreSQL server binaries not found: install them with `sudo apt-get install -y {}`, or run \
             again with --provision (as root on Debian)",
            PACKAGES.join(" ")
        );
    }
    apt_install(&PACKAGES)?;
    if !postgres_binaries_found()? {
        bail!(
            "apt-get installed {} but still no initdb and pg_ctl are found in /usr/lib/postgresql/*/bin or \
             on PATH: check the packages' files with `dpkg -L postgresql-common`",
            PACKAGES.join(" ")
        );
    }
    Ok(Some(format!("installed {} with apt-get", PACKAGES.join(" "))))
}

/// Whether `initdb` and `pg_ctl` are where the native engine looks for them. Its finder is private to
/// `engine::native`; this is the Debian-relevant part of it (XTASK_PG_BINDIR, PATH,
/// /usr/lib/postgresql/*/bin), so keep the two in step.
fn postgres_binaries_found() -> Result<bool> {
    if let Some(dir) = std::env::var_os("XTASK_PG_BINDIR").filter(|d| !d.is_empty()) {
        if has_server_binaries(Path::new(&dir)) {
            return Ok(true);
        }
        // The native engine looks nowhere else, so installing a package would not help.
        bail!(
            "XTASK_PG_BINDIR={} holds no initdb and pg_ctl: point it at PostgreSQL's bin directory, or unset it",
            Path::new(&dir).display()
        );
    }
    let on_path = which::which("pg_ctl")
        .ok()
        .and_then(|pg_ctl| std::fs::canonicalize(pg_ctl).ok())
        .is_some_and(|pg_ctl| pg_ctl.parent().is_some_and(has_server_binaries));
    let in_debian_dirs = std::fs::read_dir("/usr/lib/postgresql")
        .is_ok_and(|entries| entries.flatten().any(|e| has_server_binaries(&e.path().join("bin"))));
    Ok(on_path || in_debian_dirs)
}

fn has_server_binaries(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// A Docker engine that answers `docker version`. When none answers and `may`, installs docker.io
/// if needed and starts `dockerd`; returns the daemon only when this call started it.
pub fn ensure_docker_engine(may: bool) -> Result<Option<DockerDaemon>> {
    if docker_answers() {
        return Ok(None);
    }
    let installed = which::which("docker").is_ok() && which::which("dockerd").is_ok();
    if !may {
        if !installed {
            bail!(
                "no Docker engine answers and dockerd is not installed: install it with `sudo apt-get install \
                 -y docker.io`, then start it (`sudo systemctl start docker`, or `sudo dockerd` without \
                 systemd), or run again with --provision (as root on Debian)"
            );
        }
        bail!(
            "no Docker engine answers: start one with `sudo systemctl start docker` (or `sudo dockerd` \
             without systemd), or run again with --provision (as root on Debian)"
        );
    }
    if let Some(host) = foreign_docker_host() {
        bail!(
            "no Docker engine answers at DOCKER_HOST={host}: start that engine, or unset DOCKER_HOST so that \
             a local dockerd can be started"
        );
    }
    if !installed {
        apt_install(&["docker.io"])?;
        // Where services can start, the package has started its own daemon.
        if docker_answers() {
            return Ok(None);
        }
    }
    if !crate::os::is_root() {
        bail!(
            "no Docker engine answers, and starting dockerd needs root: run `sudo systemctl start docker` \
             (or `sudo dockerd` without systemd), or run again as root"
        );
    }
    DockerDaemon::start().map(Some)
}

/// A `dockerd` this run started; dropping it stops it (SIGTERM, then SIGKILL after 30 s).
#[derive(Debug)]
pub struct DockerDaemon {
    child: Child,
}

impl DockerDaemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn start() -> Result<DockerDaemon> {
        // In /tmp, where anyone may have left a link by that name: replaced, never followed.
        let log = crate::fsafe::create_replacing(std::path::Path::new(DOCKERD_LOG), 0o600)?;
        let log_err = log.try_clone().with_context(|| format!("open {DOCKERD_LOG}"))?;
        eprintln!("provision: starting dockerd (log: {DOCKERD_LOG})");
        // Its own process group: a Ctrl-C at the terminal reaches only us, and dropping the daemon
        // then stops it in order instead of killing it half-way through its start or its containers.
        let child = Command::new("dockerd")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .context("start dockerd (it is looked for on PATH, usually as /usr/sbin/dockerd)")?;
        // From here on an error drops the daemon, which stops it.
        let mut daemon = DockerDaemon { child };
        daemon.wait_until_answering()?;
        eprintln!("provision: dockerd is up (pid {})", daemon.pid());
        Ok(daemon)
    }

    fn wait_until_answering(&mut self) -> Result<()> {
        let deadline = Instant::now() + DOCKERD_START_TIMEOUT;
        while !docker_answers() {
            if let Some(status) = self.child.try_wait().context("check on dockerd")? {
                bail!(
                    "dockerd exited during startup ({status}); the end of {DOCKERD_LOG}:\n{}\nfix the cause \
                     above, or start a Docker engine yourself (`sudo systemctl start docker`)",
                    dockerd_log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "dockerd did not answer within {} s; the end of {DOCKERD_LOG}:\n{}\nfix the cause \
                     above, or start a Docker engine yourself (`sudo systemctl start docker`)",
                    DOCKERD_START_TIMEOUT.as_secs(),
                    dockerd_log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        // Reaping happens only here and in try_wait, so while it is unreaped the pid is still our
        // child's and cannot name another process.
        if self.child.try_wait().context("check on dockerd")?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.pid()).context("dockerd's pid")?;
        eprintln!("provision: stopping dockerd (pid {pid})");
        // SAFETY: kill has no memory preconditions; the pid is our unreaped child's (see above).
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(std::io::Error::last_os_error()).context("send SIGTERM to dockerd");
        }
        let deadline = Instant::now() + DOCKERD_STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait().context("wait for dockerd")?.is_some() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        eprintln!("provision: dockerd did not stop within {} s; killing it", DOCKERD_STOP_TIMEOUT.as_secs());
        self.child.kill().context("kill dockerd")?;
        self.child.wait().context("wait for dockerd")?;
        Ok(())
    }
}

impl Drop for DockerDaemon {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("provision: {error:#}; stop it with `sudo kill {}`", self.pid());
        }
    }
}

fn dockerd_log_tail() -> String {
    match std::fs::read_to_string(DOCKERD_LOG) {
        Ok(text) => crate::engine::tail(&text, 40),
        Err(error) => format!("(cannot read it: {error})"),
    }
}

/// The docker image `image`: built with `root.join(build_script)` when absent and `may`. Returns
/// what was done, if anything. Without a build script, a missing image is an error.
/// A program the tests run, installed with apt (the package of the same name) when missing.
pub fn ensure_program(program: &str, may: bool) -> Result<String> {
    if which::which(program).is_ok() {
        return Ok(format!("{program} found"));
    }
    if !may {
        bail!(
            "the tests need {program}, which is not installed: `sudo apt-get install {program}`, or run again with --provision"
        );
    }
    apt_install(&[program])?;
    Ok(format!("installed {program}"))
}

pub fn ensure_image(
    root: &Path,
    image: &str,
    build_script: Option<&Path>,
    may: bool,
) -> Result<Option<String>> {
    if !docker_answers() {
        bail!(
            "no Docker engine answers, so the image {image} cannot be looked for or built: start one \
             (`sudo systemctl start docker`, or `sudo dockerd`), or run again with --provision (as root on Debian)"
        );
    }
    if docker_succeeds(&["image", "inspect", image]) {
        return Ok(None);
    }
    let Some(build_script) = build_script else {
        bail!("the docker image {image} is missing: `docker pull {image}`, or build it");
    };
    let script = build_script.display();
    if !may {
        bail!(
            "the docker image {image} is missing: build it with `sudo {script} {image}` in {}, or run again with \
             --provision (as root on Debian)",
            root.display()
        );
    }
    if !crate::os::is_root() {
        bail!(
            "building the image {image} needs root (mmdebstrap): run `sudo {script} {image}` in {}",
            root.display()
        );
    }
    if which::which("mmdebstrap").is_err() {
        apt_install(&["mmdebstrap"])?;
    }
    eprintln!("provision: building the image {image} with {script}");
    // Its stdout goes to our stderr: our stdout is kept for JSON output.
    // The script may call back into this tool (`binaries`) without building it again.
    let xtask = std::env::current_exe().context("find this program's path")?;
    let build = duct::cmd!(root.join(build_script), image).dir(root).env("XTASK", xtask);
    crate::os::run_to_stderr(build, &format!("{script} {image}"))?;
    if !docker_succeeds(&["image", "inspect", image]) {
        bail!("{script} succeeded but the image {image} does not exist: make the script build {image}");
    }
    Ok(Some(format!("built the image {image} with {script}")))
}

/// DOCKER_HOST when it points the CLI away from the socket a plain `dockerd` listens on.
fn foreign_docker_host() -> Option<String> {
    std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty() && h != "unix:///var/run/docker.sock")
}

/// Whether a Docker engine answers the CLI.
pub fn docker_answers() -> bool {
    docker_succeeds(&["version", "--format", "{{.Server.Version}}"])
}

fn docker_succeeds(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Installs Debian packages with apt-get, as root only; elsewhere the error names the command to run.
#[cfg(test)]
mod tests {
    use super::ci_allows;

    #[test]
    fn ci_variable_allows_provisioning() {
        for value in ["true", "TRUE", "True", "1", " true\n"] {
            assert!(ci_allows(Some(value)), "{value:?}");
        }
        for value in ["", "false", "0", "yes", "2"] {
            assert!(!ci_allows(Some(value)), "{value:?}");
        }
        assert!(!ci_allows(None));
    }
}
