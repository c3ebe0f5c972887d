//! The docker engine: one container per project (`<project>-postgres`) with a named volume for its
//! data and its port published on 127.0.0.1 only, driven through the `docker` CLI.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

use super::admin_password::AdminPassword;
use super::{ClientProgram, ClientTool, Engine, NEXT_SETUP, NEXT_UP, ServerState, Status, UpOutcome, tail};
use crate::config::{Config, EngineKind};
use crate::conn::{Endpoint, ReadyWatch, wait_ready};
use crate::{fsafe, os};

const READY_TIMEOUT: Duration = Duration::from_secs(90);
const PROJECT_LABEL: &str = "xtask.project";
/// The data directory of the project that made a container or volume: what `ci` sweeps by.
const DATA_DIR_LABEL: &str = "xtask.data-dir";
/// In the data directory: this project's volume was made (so its absence later means its data was
/// removed outside xtask, not that there never was any). Holds the volume's name, then
/// `major <N>`: the PostgreSQL major whose data it holds, once known.
const VOLUME_MARKER: &str = ".xtask-docker-volume";
/// What to do when the Docker engine does not answer.
const START_ENGINE: &str = "start the Docker engine (`sudo systemctl start docker`, `sudo dockerd &`, or open \
                            Docker Desktop), then run `cargo xtask db-up`";

pub struct Docker {
    sh: Shell,
    project: String,
    container: String,
    volume: String,
    image: String,
    /// The major `postgres` pins, if any.
    pinned: Option<u32>,
    port: u16,
    endpoint: Endpoint,
    admin: AdminPassword,
    /// Where the lock that serialises `up` between processes lives.
    data_dir: PathBuf,
}

/// What `docker container inspect` says about our container.
struct Container {
    status: String,
    image: String,
    /// The PostgreSQL major its image runs (`PG_MAJOR`).
    major: Option<u32>,
    host_port: Option<String>,
    project: Option<String>,
}

impl Docker {
    pub fn new(config: &Config) -> Result<Docker> {
        which::which("docker").context(
            "the docker engine needs the Docker CLI (`docker`), which is not on PATH: install Docker \
             Engine or Docker Desktop, or use the native engine (XTASK_ENGINE=native)",
        )?;
        let admin = AdminPassword::choose(config, config.data_dir.join(VOLUME_MARKER).exists())?;
        Ok(Docker {
            sh: Shell::new()?,
            project: config.project.clone(),
            container: format!("{}-postgres", config.project),
            volume: format!("{}-pgdata", config.project),
            image: config.image.clone(),
            pinned: config.postgres,
            port: config.port,
            endpoint: Endpoint::local(config.port, &config.user, admin.first()),
            admin,
            data_dir: config.data_dir.clone(),
        })
    }

    fn inspect(&self) -> Result<Option<Container>> {
        let name = &self.container;
        let output = cmd!(self.sh, "docker container inspect {name}")
            .quiet()
            .ignore_status()
            .output()
            .context("run docker container inspect")?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            if stderr.contains("No such container") || stderr.contains("No such object") {
                return Ok(None);
            }
            bail!(engine_down_message(&self.container, &stderr));
        }
        let parsed: Value = serde_json::from_slice(&output.stdout).context("parse docker inspect output")?;
        let c = &parsed[0];
        Ok(Some(Container {
            status: c["State"]["Status"].as_str().unwrap_or("unknown").to_owned(),
            image: c["Config"]["Image"].as_str().unwrap_or_default().to_owned(),
            major: c["Config"]["Env"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|var| var.as_str()?.strip_prefix("PG_MAJOR=")?.parse().ok()),
            host_port: c["HostConfig"]["PortBindings"]["5432/tcp"][0]["HostPort"].as_str().map(str::to_owned),
            project: c["Config"]["Labels"][PROJECT_LABEL].as_str().map(str::to_owned),
        }))
    }

    fn check_owner(&self, c: &Container) -> Result<()> {
        if c.project.as_deref() != Some(self.project.as_str()) {
            bail!(
                "a container named {} exists but was not created by xtask for project `{}`; it is left \
                 alone. Rename or remove it yourself (`docker rm -f {}`), or set a distinct `project`",
                self.container,
                self.project,
                self.container
            );
        }
        Ok(())
    }

    /// `Some(true)` for our volume, `Some(false)` for someone else's, `None` when there is none.
    fn volume_is_ours(&self) -> Result<Option<bool>> {
        let volume = &self.volume;
        let format = format!("{{{{index .Labels \"{PROJECT_LABEL}\"}}}}");
        let output = cmd!(self.sh, "docker volume inspect --format {format} {volume}")
            .quiet()
            .ignore_status()
            .output()?;
        if !output.status.success() {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(&output.stdout).trim() == self.project))
    }

    fn refuse_foreign_volume(&self) -> Result<()> {
        if self.volume_is_ours()? == Some(false) {
            bail!(
                "a volume named {} exists but was not created by xtask for project `{}`; it is left alone. \
                 Remove or rename it yourself, or set a distinct `project`",
                self.volume,
                self.project
            );
        }
        Ok(())
    }

    fn check_ours(&self, c: &Container) -> Result<()> {
        self.check_owner(c)?;
        let port = self.port.to_string();
        // A tag like `some/image:1` is no PostgreSQL version.
        let wanted = self.pinned.or_else(|| major_from_tag(&self.image).filter(|m| *m >= 9));
        if let (Some(running), Some(wanted)) = (c.major, wanted)
            && running != wanted
        {
            bail!(
                "container {} runs PostgreSQL {running} (image {}), but the configuration asks for PostgreSQL \
                 {wanted} (image {}); its data (volume {}) is never upgraded or dropped on its own, and a \
                 PostgreSQL {wanted} server cannot open it. To keep it, pin {running} again (`postgres = \
                 \"{running}\"`, or the image). To move to {wanted}: `cargo xtask backup`, `cargo xtask \
                 teardown`, `cargo xtask setup`, then `cargo xtask restore`; nothing was changed",
                self.container,
                c.image,
                self.image,
                self.volume
            );
        }
        if c.image != self.image || c.host_port.as_deref() != Some(port.as_str()) {
            bail!(
                "container {} runs image {} on port {}, but the configuration asks for image {} on port {}.\n\
                 Its data lives in volume {} and is kept: run `cargo xtask db-down` then `cargo xtask db-up` \
                 to recreate it with the new settings",
                self.container,
                c.image,
                c.host_port.as_deref().unwrap_or("none"),
                self.image,
                self.port,
                self.volume
            );
        }
        Ok(())
    }

    fn docker(&self, args: &[&str]) -> Result<String> {
        run(args)
    }

    /// The image's PostgreSQL major version: its `PG_MAJOR`, else its tag.
    fn image_major(&self) -> Result<Option<u32>> {
        let image = &self.image;
        let format = "{{json .Config.Env}}";
        let inspected =
            cmd!(self.sh, "docker image inspect --format {format} {image}").quiet().ignore_stderr().read();
        let env = match inspected {
            Ok(env) => env,
            Err(_) => {
                self.pull()?;
                cmd!(self.sh, "docker image inspect --format {format} {image}").quiet().read()?
            }
        };
        let from_env = serde_json::from_str::<Vec<String>>(&env)
            .unwrap_or_default()
            .iter()
            .find_map(|var| var.strip_prefix("PG_MAJOR=").and_then(|v| v.parse().ok()));
        Ok(from_env.or_else(|| major_from_tag(&self.image)))
    }

    fn pull(&self) -> Result<()> {
        let image = &self.image;
        eprintln!("image {image} is not on this machine; pulling it");
        let pulled = duct::cmd!("docker", "pull", image).stdout_to_stderr().unchecked().run()?;
        if !pulled.status.success() {
            bail!(
                "image {image} is not on this machine and could not be pulled (see docker's message above).\n\
                 Pull or build it, choose another with `image` in [workspace.metadata.xtask] or XTASK_IMAGE, \
                 or use the native engine (XTASK_ENGINE=native)"
            );
        }
        Ok(())
    }

    fn ensure_port_free(&self) -> Result<()> {
        let Some(mut holder) = os::port_holder(self.port) else {
            return Ok(());
        };
        let filter = format!("publish={}", self.port);
        let format = "{{.Names}}";
        if let Ok(names) = cmd!(self.sh, "docker ps --filter {filter} --format {format}").quiet().read()
            && !names.is_empty()
        {
            holder = format!("docker container {names}");
        }
        bail!(
            "port {} on 127.0.0.1 is taken by {holder}: stop it, or choose a free port with `port` in \
             [workspace.metadata.xtask] or XTASK_PORT",
            self.port
        )
    }

    fn create(&mut self) -> Result<()> {
        let major = self.image_major()?;
        if let (Some(pinned), Some(runs)) = (self.pinned, major)
            && pinned != runs
        {
            bail!(
                "image {} runs PostgreSQL {runs}, but `postgres` pins {pinned}: choose an image of \
                 PostgreSQL {pinned} (`image`, or XTASK_IMAGE), or leave `image` out to get postgres:{pinned}",
                self.image
            );
        }
        let mount = data_mount(major);
        self.ensure_port_free()?;
        self.refuse_foreign_volume()?;
        let volume = &self.volume;
        if cmd!(self.sh, "docker volume inspect {volume}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_err()
        {
            if self.volume_marker().exists() {
                eprintln!(
                    "volume {volume}, which held this project's databases, was removed outside xtask: their \
                     data is lost. Starting an empty server; `cargo xtask setup` makes this branch's databases anew"
                );
            }
            let label = format!("{PROJECT_LABEL}={}", self.project);
            let data_dir = self.data_dir_label();
            self.docker(&["volume", "create", "--label", &label, "--label", &data_dir, volume])?;
            let _ = std::fs::remove_file(self.volume_marker()); // a new volume: no data of any major
        } else {
            self.refuse_volume_of_another_major(major)?;
        }
        self.mark_volume(major)?;
        // The container's POSTGRES_PASSWORD is the password on file: generated, saved first.
        self.admin.save_before_create()?;
        eprintln!("creating container {} from {}", self.container, self.image);
        let label = format!("{PROJECT_LABEL}={}", self.project);
        let data_dir = self.data_dir_label();
        let user = format!("POSTGRES_USER={}", self.endpoint.user);
        let publish = format!("127.0.0.1:{}:5432", self.port);
        let mount = format!("{volume}:{mount}");
        let (container, image) = (&self.container, &self.image);
        // `-e POSTGRES_PASSWORD` without a value makes docker read it from its own environment,
        // so the password never appears on a command line.
        let output = cmd!(
            self.sh,
            "docker run --detach --name {container} --label {label} --label {data_dir} -e {user} -e POSTGRES_PASSWORD
             -e POSTGRES_DB=postgres --publish {publish} --volume {mount} {image}"
        )
        .env("POSTGRES_PASSWORD", &self.endpoint.password)
        .quiet()
        .ignore_status()
        .output()?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            // Another worktree's setup created it at the same moment: use theirs.
            if stderr.contains("Conflict") && self.appears_as_ours(Duration::from_secs(10)) {
                return Ok(());
            }
            bail!("docker run failed: {}", stderr.trim_end());
        }
        Ok(())
    }

    /// Whether our container shows up within `limit`: a name another process has just taken may
    /// not be inspectable for a moment.
    fn appears_as_ours(&self, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(c)) = self.inspect() {
                return c.project.as_deref() == Some(self.project.as_str());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn data_dir_label(&self) -> String {
        format!("{DATA_DIR_LABEL}={}", self.data_dir.display())
    }

    fn volume_marker(&self) -> PathBuf {
        self.data_dir.join(VOLUME_MARKER)
    }

    /// Serialises creating, starting and the admin password's rotation between processes.
    fn lock_file(&self) -> PathBuf {
        self.data_dir.join(".xtask-docker.lock")
    }

    /// Remembers that our volume exists, and the major its data is of (see VOLUME_MARKER).
    fn mark_volume(&self, major: Option<u32>) -> Result<()> {
        let marker = self.volume_marker();
        let recorded = std::fs::read_to_string(&marker).ok();
        let wanted = match major.or_else(|| recorded.as_deref().and_then(recorded_major)) {
            Some(major) => format!("{}\nmajor {major}\n", self.volume),
            None => format!("{}\n", self.volume),
        };
        if recorded.as_deref() != Some(wanted.as_str()) {
            fsafe::private_dir(&self.data_dir, "the data directory")?;
            fsafe::write_atomically(&marker, wanted.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    /// Refuses to give the volume to a server of another major than the one whose data it holds.
    fn refuse_volume_of_another_major(&self, major: Option<u32>) -> Result<()> {
        let marker = std::fs::read_to_string(self.volume_marker()).ok();
        let Some(made) = marker.as_deref().and_then(recorded_major) else {
            return Ok(());
        };
        if let Some(major) = major.filter(|m| *m != made) {
            bail!(
                "volume {} holds this project's databases from PostgreSQL {made}, but the configuration \
                 asks for PostgreSQL {major} (image {}); the data is never upgraded or dropped on its own, \
                 and a PostgreSQL {major} server cannot open it. To keep it, pin {made} again (`postgres = \
                 \"{made}\"`, or the image). To move to {major}: with {made} pinned, `cargo xtask db-up` and \
                 `cargo xtask backup`; then `cargo xtask teardown`, pin {major}, `cargo xtask setup` and \
                 `cargo xtask restore`; nothing was changed",
                self.volume,
                self.image
            );
        }
        Ok(())
    }

    fn logs_tail(&self) -> String {
        let name = &self.container;
        let output = cmd!(self.sh, "docker logs --tail 15 {name}").quiet().ignore_status().output();
        match output {
            Ok(out) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                format!("container log (last lines, `docker logs {name}`):\n{}", tail(&text, 15))
            }
            Err(e) => format!("(docker logs failed: {e})"),
        }
    }

    /// Waits until the server accepts the admin login (see [`AdminPassword::wait_ready`]).
    fn wait(&mut self) -> Result<()> {
        let mut login = self.endpoint.clone();
        self.admin.wait_ready(&mut login, |login| self.wait_with(login))?;
        self.endpoint = login;
        Ok(())
    }

    fn wait_with(&self, login: &Endpoint) -> Result<()> {
        let watch = ReadyWatch {
            died: &|| match self.inspect() {
                Ok(Some(c)) if c.status == "running" => None,
                Ok(Some(c)) => Some(format!("container {} is {}", self.container, c.status)),
                Ok(None) => Some(format!("container {} is gone", self.container)),
                Err(e) => Some(format!("{e:#}")),
            },
            log_tail: &|| self.logs_tail(),
        };
        wait_ready(login, READY_TIMEOUT, &watch)
    }

    /// Brings the container up; `up` then settles the admin password.
    fn bring_up(&mut self) -> Result<UpOutcome> {
        let found = self.inspect()?;
        if self.admin.is_fresh() && (found.is_some() || self.volume_is_ours()? == Some(true)) {
            // A container or volume made before the marker existed, with the old default password.
            self.admin.server_found();
            self.endpoint.password = self.admin.first().to_owned();
        }
        if let Some(running) = found.filter(|c| c.status == "running") {
            self.check_ours(&running)?;
            self.wait()?;
            self.mark_volume(running.major)?;
            return Ok(UpOutcome::AlreadyRunning);
        }
        // Worktrees running setup at once: one creates or starts the container, the others wait.
        fsafe::private_dir(&self.data_dir, "the data directory")?;
        let _lock = os::exclusive_lock(&self.lock_file())?;
        let found = self.inspect()?;
        let major = found.as_ref().and_then(|c| c.major);
        let outcome = match found {
            None => {
                self.create()?;
                UpOutcome::Created
            }
            Some(c) => {
                self.check_ours(&c)?;
                match c.status.as_str() {
                    "running" => UpOutcome::AlreadyRunning,
                    "paused" => {
                        self.docker(&["unpause", &self.container])?;
                        UpOutcome::Started
                    }
                    "created" | "exited" => {
                        self.ensure_port_free()?;
                        self.docker(&["start", &self.container])?;
                        UpOutcome::Started
                    }
                    other => bail!(
                        "container {} is {other}; inspect it with `docker logs {}`, then run \
                         `cargo xtask db-down` and `cargo xtask db-up` to recreate it (its data volume is kept)\n{}",
                        self.container,
                        self.container,
                        self.logs_tail()
                    ),
                }
            }
        };
        self.wait()?;
        if major.is_some() {
            self.mark_volume(major)?;
        }
        Ok(outcome)
    }
}

impl Engine for Docker {
    fn kind(&self) -> EngineKind {
        EngineKind::Docker
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn up(&mut self) -> Result<UpOutcome> {
        let outcome = self.bring_up()?;
        let server = format!("container {}", self.container);
        let lock = self.lock_file();
        self.admin.settle(&mut self.endpoint, &server, &lock)?;
        Ok(outcome)
    }

    fn down(&self) -> Result<bool> {
        let Some(container) = self.inspect()? else {
            eprintln!(
                "no container {}: nothing to stop; its data, if any, is kept in volume {}",
                self.container, self.volume
            );
            return Ok(false);
        };
        self.check_owner(&container)?;
        self.docker(&["stop", "--time", "30", &self.container])?;
        // -v removes anonymous volumes an image may declare besides ours; the named volume stays.
        self.docker(&["rm", "--volumes", &self.container])?;
        Ok(true)
    }

    fn status(&self) -> Result<Status> {
        let volume = &self.volume;
        Ok(match self.inspect() {
            Err(e) => {
                // The message's first line says what is wrong; what to do goes in `next`.
                let message = format!("{e:#}");
                let detail = message.lines().next().unwrap_or_default();
                Status::new(ServerState::Unreachable, detail, Some(START_ENGINE))
            }
            Ok(None) => {
                let kept = cmd!(self.sh, "docker volume inspect {volume}")
                    .quiet()
                    .ignore_stdout()
                    .ignore_stderr()
                    .run();
                let container = &self.container;
                match kept {
                    Ok(()) => Status::new(
                        ServerState::Absent,
                        format!("no container {container}; its data is kept in volume {volume}"),
                        Some(NEXT_UP),
                    ),
                    Err(_) if self.volume_marker().exists() => Status::new(
                        ServerState::Absent,
                        format!(
                            "no container {container}, and volume {volume}, which held this project's \
                             databases, was removed outside xtask: their data is lost"
                        ),
                        Some(NEXT_SETUP),
                    ),
                    Err(_) => Status::new(
                        ServerState::Absent,
                        format!("no container {container} and no volume {volume}"),
                        Some(NEXT_SETUP),
                    ),
                }
            }
            Ok(Some(c)) => {
                let running = c.status == "running";
                Status::new(
                    if running { ServerState::Running } else { ServerState::Stopped },
                    format!(
                        "container {} ({}), image {}, volume {volume}",
                        self.container, c.status, c.image
                    ),
                    (!running).then_some(NEXT_UP),
                )
            }
        })
    }

    fn destroy(&self) -> Result<()> {
        if self.inspect()?.is_some() {
            self.down()?;
        }
        self.refuse_foreign_volume()?;
        let volume = &self.volume;
        let output = cmd!(self.sh, "docker volume rm {volume}").quiet().ignore_status().output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() && !stderr.contains("no such volume") {
            bail!("docker volume rm {volume} failed: {}", stderr.trim_end());
        }
        let _ = std::fs::remove_file(self.volume_marker());
        Ok(())
    }

    /// psql from this machine when there is one; pg_dump and pg_restore always from the container,
    /// whose versions match the server (a host pg_dump refuses a newer server, and its archives
    /// may be too new for the server's pg_restore).
    fn client_tool(&self, program: ClientProgram) -> Result<ClientTool> {
        let exec = ClientTool::DockerExec { container: self.container.clone(), program };
        Ok(match program {
            ClientProgram::Psql => super::find_client("psql").map(ClientTool::Host).unwrap_or(exec),
            ClientProgram::PgDump | ClientProgram::PgRestore => exec,
        })
    }

    fn fallback_endpoint(&self) -> Option<Endpoint> {
        self.admin.fallback_login(&self.endpoint)
    }

    /// The container must be this project's and publish the configured port (its image may differ
    /// from the configuration's: a backup before recreating it must work).
    fn check_port(&self, task: &str) -> Result<()> {
        let Some(container) = self.inspect()? else {
            bail!("refusing to {task}: container {} does not exist", self.container)
        };
        self.check_owner(&container)?;
        let port = self.port.to_string();
        if container.host_port.as_deref() != Some(port.as_str()) {
            bail!(
                "refusing to {task}: container {} publishes port {}, but the configuration (`port` or \
                 XTASK_PORT) says {}, where another server may answer: set it back, or run `cargo xtask \
                 db-down` then `cargo xtask db-up` to recreate the container on the new port; nothing was \
                 changed",
                self.container,
                container.host_port.as_deref().unwrap_or("none"),
                self.port
            );
        }
        Ok(())
    }

    /// The server must hold the container's `pg_control` (read inside it, at the data directory
    /// the server names).
    fn check_identity(&self, task: &str, admin: &mut postgres::Client) -> Result<()> {
        let server = super::identity::of_server(admin)?;
        let server = &server;
        let control = format!("{}/global/pg_control", server.data_directory);
        let container = &self.container;
        let read = cmd!(self.sh, "docker exec {container} cat {control}").quiet().ignore_stderr().output();
        let identifier = read
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| super::identity::system_identifier_in(&o.stdout));
        let ours = format!("container {container}");
        super::identity::check(task, self.port, server, &ours, identifier)
    }
}

/// The Docker engine is stopped (or `DOCKER_HOST` points nowhere): the container's state is unknown.
fn engine_down_message(container: &str, stderr: &str) -> String {
    format!(
        "the Docker engine does not answer, so container {container} cannot be reached: {}\n\
         Start the engine (`sudo systemctl start docker`, `sudo dockerd &`, or open Docker Desktop), then run \
         the command again (`cargo xtask db-up` starts the container); the native engine \
         (XTASK_ENGINE=native) is a separate server without the container's databases",
        one_line(stderr)
    )
}

/// Text on one line (for db-status's detail): lines joined with "; ".
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// Whether this project made a container volume with the data directory it uses: `auto` then stays
/// with docker when the engine is stopped, instead of an empty native server.
pub fn used_here(config: &Config) -> bool {
    config.data_dir.join(VOLUME_MARKER).exists() && which::which("docker").is_ok()
}

/// Up to PostgreSQL 17 the official image keeps its data in /var/lib/postgresql/data; from 18 the
/// volume goes on /var/lib/postgresql (PGDATA /var/lib/postgresql/18/docker).
fn data_mount(major: Option<u32>) -> &'static str {
    match major {
        Some(m) if m >= 18 => "/var/lib/postgresql",
        _ => "/var/lib/postgresql/data",
    }
}

/// The `major <N>` line of VOLUME_MARKER.
fn recorded_major(marker: &str) -> Option<u32> {
    marker.lines().find_map(|line| line.strip_prefix("major ")?.trim().parse().ok())
}

/// `postgres:17` → 17, `postgres:16.4-bookworm` → 16, `postgres` or `postgres:latest` → unknown.
fn major_from_tag(image: &str) -> Option<u32> {
    let name = image.rsplit('/').next()?;
    let tag = name.split_once(':')?.1;
    let digits: String = tag.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether `image` is on this machine, else whether it can be pulled now (the pull's output on
/// stderr).
pub fn image_obtainable(image: &str) -> bool {
    let here = duct::cmd!("docker", "image", "inspect", image).stdout_null().stderr_null().unchecked().run();
    if here.is_ok_and(|out| out.status.success()) {
        return true;
    }
    eprintln!("image {image} is not on this machine; pulling it");
    let pulled = duct::cmd!("docker", "pull", image).stdout_to_stderr().unchecked().run();
    pulled.is_ok_and(|out| out.status.success())
}

/// True when a Docker engine answers. Asks the engine's socket directly (well under a millisecond)
/// and falls back to the CLI only when DOCKER_HOST or a context points elsewhere.
pub fn engine_answers() -> bool {
    if which::which("docker").is_err() {
        return false;
    }
    match std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
        Some(host) => match host.strip_prefix("unix://") {
            Some(path) => socket_answers(path.into()),
            None => cli_answers(),
        },
        None if std::env::var_os("DOCKER_CONTEXT").is_some() => cli_answers(),
        None => candidate_sockets().into_iter().any(socket_answers),
    }
}

fn candidate_sockets() -> Vec<PathBuf> {
    let mut sockets = vec![PathBuf::from("/var/run/docker.sock")];
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        sockets.push(PathBuf::from(runtime).join("docker.sock"));
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        sockets.push(home.join(".docker/run/docker.sock"));
        sockets.push(home.join(".colima/default/docker.sock"));
        sockets.push(home.join(".rd/docker.sock"));
    }
    sockets
}

fn socket_answers(path: PathBuf) -> bool {
    let ping = || -> std::io::Result<bool> {
        let mut stream = UnixStream::connect(&path)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
        let mut reply = [0u8; 16];
        let n = stream.read(&mut reply)?;
        Ok(reply[..n].starts_with(b"HTTP/1.") && reply[..n].windows(5).any(|w| w == b" 200 "))
    };
    ping().unwrap_or(false)
}

fn cli_answers() -> bool {
    std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes the containers (with their anonymous volumes) and the volumes that projects whose data
/// directory lies in `root` made; returns how many. Nothing when no Docker engine answers.
/// The docker CLI run to its end, whatever its status: for callers that read its stderr.
pub fn output(args: &[&str]) -> Result<std::process::Output> {
    let command = duct::cmd("docker", args).stdin_null().stdout_capture().stderr_capture().unchecked();
    command.run().with_context(|| format!("run docker {} (is the Docker CLI installed?)", args.join(" ")))
}

/// The docker CLI's stdout (trimmed); a failure is an error in docker's own words.
pub fn run(args: &[&str]) -> Result<String> {
    let output = output(args)?;
    if !output.status.success() {
        bail!("docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim_end());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub fn remove_under(root: &Path) -> usize {
    let under = |labelled: &str| Path::new(labelled).starts_with(root);
    let listed = |args: &[&str]| -> Vec<String> {
        let format = format!("{{{{.{}}}}}\t{{{{.Label \"{DATA_DIR_LABEL}\"}}}}", args[0]);
        let output = std::process::Command::new("docker")
            .args(&args[1..])
            .args(["--filter", &format!("label={DATA_DIR_LABEL}"), "--format", &format])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output();
        let Some(output) = output.ok().filter(|o| o.status.success()) else { return Vec::new() };
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .filter(|(_, dir)| under(dir))
            .map(|(id, _)| id.to_owned())
            .collect()
    };
    let remove = |args: &[&str], ids: &[String]| {
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker").args(args).args(ids).output();
        }
        ids.len()
    };
    let containers = listed(&["ID", "ps", "--all"]);
    let removed = remove(&["rm", "--force", "--volumes"], &containers);
    let volumes = listed(&["Name", "volume", "ls"]);
    removed + remove(&["volume", "rm", "--force"], &volumes)
}

#[cfg(test)]
mod tests {
    use super::{data_mount, major_from_tag, one_line};

    #[test]
    fn cli_errors_fold_onto_one_line() {
        assert_eq!(one_line("Cannot connect.\n  Is it running?\n\n"), "Cannot connect.; Is it running?");
        assert_eq!(one_line("one"), "one");
    }

    #[test]
    fn data_volume_mount_follows_the_major_version() {
        assert_eq!(data_mount(Some(15)), "/var/lib/postgresql/data");
        assert_eq!(data_mount(Some(17)), "/var/lib/postgresql/data");
        assert_eq!(data_mount(Some(18)), "/var/lib/postgresql");
        assert_eq!(data_mount(Some(19)), "/var/lib/postgresql");
        assert_eq!(data_mount(None), "/var/lib/postgresql/data");
    }

    #[test]
    fn majors_from_tags() {
        assert_eq!(major_from_tag("postgres:17"), Some(17));
        assert_eq!(major_from_tag("postgres:16.4-bookworm"), Some(16));
        assert_eq!(major_from_tag("registry:5000/team/postgres:18"), Some(18));
        assert_eq!(major_from_tag("registry:5000/postgres"), None);
        assert_eq!(major_from_tag("postgres:latest"), None);
    }
}
