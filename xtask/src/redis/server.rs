//! Where the Redis server comes from, by the engine PostgreSQL runs on: a private `redis-server`
//! process (native), a container (docker), or a given URL (external).
//!
//! The admin's password reaches the server only as a SHA-256 in its ACL file, written before it
//! starts (mode 0600, or copied into the container's volume): never on a command line.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::acl;
use super::resp::Connection;
use crate::config::{Config, EngineKind, RedisConfig};
use crate::credentials::Credentials;
use crate::engine::{ServerState, Status, UpOutcome, docker, docker_output};

/// How the admin (or a service's user) logs in.
#[derive(Clone)]
pub struct Login {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// `rediss://`: the TLS configuration that verifies the server.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Without the password, which must never reach a log.
impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted_url())
    }
}

impl Login {
    /// Connects and logs in; a refused password says which login it was.
    pub fn open(&self, timeout: Duration) -> Result<Connection> {
        let mut connection = Connection::open(&self.host, self.port, timeout, self.tls.clone())?;
        connection.call(&["AUTH", &self.user, &self.password]).map_err(|error| {
            anyhow::anyhow!(
                "the Redis server at {} refused the login of user {} ({error})",
                self.redacted_url(),
                self.user
            )
        })?;
        Ok(connection)
    }

    pub fn url(&self) -> String {
        let user = crate::conn::percent_encode(&self.user);
        let password = crate::conn::percent_encode(&self.password);
        format!("{}://{user}:{password}@{}:{}/0", self.scheme(), self.host, self.port)
    }

    pub fn redacted_url(&self) -> String {
        let user = crate::conn::percent_encode(&self.user);
        format!("{}://{user}:***@{}:{}/0", self.scheme(), self.host, self.port)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "rediss" } else { "redis" }
    }

    pub fn as_user(&self, user: &str, password: &str) -> Login {
        Login { user: user.to_owned(), password: password.to_owned(), ..self.clone() }
    }
}

pub struct Server {
    pub kind: EngineKind,
    project: String,
    port: u16,
    image: String,
    binary: Option<PathBuf>,
    /// Native: the server's own folder (config, ACL file, data, log); docker: where the files
    /// copied into the volume are made.
    dir: PathBuf,
    data_dir: PathBuf,
    url: Option<String>,
    ca: Option<PathBuf>,
}

/// How long the probe of a running server may take (a silent program on the port fails fast).
const QUICK: Duration = Duration::from_millis(500);
/// How long a reply may take once logged in.
const WORK: Duration = Duration::from_secs(10);

impl Server {
    /// The server for `engine`, the one PostgreSQL runs on (same rules, same choice).
    pub fn new(config: &Config, redis: &RedisConfig, engine: EngineKind) -> Result<Server> {
        if engine == EngineKind::External && redis.url.is_none() {
            bail!(
                "the external engine has no Redis server to use: give its URL with XTASK_REDIS_URL=redis://user:password@host:port \
                 (or `url` in [workspace.metadata.xtask.redis]); the user must be allowed to manage ACL users"
            );
        }
        Ok(Server {
            kind: engine,
            project: config.project.clone(),
            port: redis.port,
            image: redis.image.clone(),
            binary: redis.server.clone(),
            dir: config.data_dir.join("redis"),
            data_dir: config.data_dir.clone(),
            // Like `database-url`, only the external engine's: a URL in Cargo.toml does not send a
            // developer on the docker or native engine to the team's server.
            url: redis.url.clone().filter(|_| engine == EngineKind::External),
            ca: redis.ca.clone(),
        })
    }

    /// The admin's login: the external URL's, else the generated admin of the server made here.
    pub fn admin(&self, credentials: &Credentials) -> Result<Login> {
        if let Some(url) = &self.url {
            return parse_url(url, self.ca.as_deref());
        }
        let password = credentials.redis_admin().unwrap_or_default().to_owned();
        Ok(Login {
            host: "127.0.0.1".into(),
            port: self.port,
            user: acl::ADMIN_USER.into(),
            password,
            tls: None,
        })
    }

    /// The admin's name, without its password (nothing is read).
    pub fn admin_user(&self) -> Result<String> {
        match &self.url {
            Some(url) => Ok(url_parts(url)?.1.user),
            None => Ok(acl::ADMIN_USER.into()),
        }
    }

    /// Logged in as the admin of a server that runs, or `None` (quick: the no-op setup's path).
    pub fn connect_quickly(&self, credentials: &Credentials) -> Option<Connection> {
        let admin = self.admin(credentials).ok()?;
        let mut connection =
            (!admin.password.is_empty() || self.url.is_some()).then(|| admin.open(QUICK).ok())??;
        connection.set_timeout(WORK).ok()?;
        Some(connection)
    }

    pub fn up(&self, credentials: &mut Credentials) -> Result<(UpOutcome, Connection)> {
        if let Some(connection) = self.connect_quickly(credentials) {
            return Ok((UpOutcome::AlreadyRunning, connection));
        }
        // Running, but slow to answer the quick probe (a stalled disk under its AOF): asked again
        // with time to answer before it is taken for a server that refuses its admin.
        if self.runs_here()? {
            let admin = self.admin(credentials)?;
            if let Ok(connection) = admin.open(WORK) {
                return Ok((UpOutcome::AlreadyRunning, connection));
            }
        }
        let outcome = match self.kind {
            EngineKind::External => {
                let admin = self.admin(credentials)?;
                return Ok((UpOutcome::AlreadyRunning, admin.open(Duration::from_secs(5))?));
            }
            EngineKind::Docker => self.docker_up(credentials)?,
            _ => self.native_up(credentials)?,
        };
        Ok((outcome, self.wait_ready(credentials)?))
    }

    /// The native process or the container runs (whether it answers or not).
    fn runs_here(&self) -> Result<bool> {
        Ok(match self.kind {
            EngineKind::External => false,
            EngineKind::Docker => self.container_state()? == Some(true),
            _ => self.native_pid().is_some(),
        })
    }

    /// Stops the server, its data kept. The users are saved to the ACL file first: a setup killed
    /// between making a user and saving it must not lose it at the restart.
    pub fn down(&self, credentials: &Credentials) -> Result<bool> {
        if let Some(mut connection) = self.connect_quickly(credentials) {
            acl::save(&mut connection)?;
        }
        self.stop()
    }

    fn stop(&self) -> Result<bool> {
        match self.kind {
            EngineKind::External => Ok(false),
            EngineKind::Docker => {
                let running = self.container_state()? == Some(true);
                if running {
                    docker(&["stop", "--time", "30", &self.container_name()])?;
                }
                Ok(running)
            }
            _ => {
                let Some(pid) = self.native_pid() else { return Ok(false) };
                // SIGTERM: redis-server writes its data and exits.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                let start = Instant::now();
                while crate::procs::alive(pid) {
                    if start.elapsed() > Duration::from_secs(30) {
                        bail!(
                            "redis-server (pid {pid}) did not stop within 30 s; see {}",
                            self.log().display()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(true)
            }
        }
    }

    pub fn status(&self, credentials: &Credentials) -> Status {
        let endpoint = self.admin(credentials).map(|a| a.redacted_url()).unwrap_or_default();
        match self.kind {
            EngineKind::External => {
                match self.admin(credentials).and_then(|a| a.open(Duration::from_secs(3))) {
                    Ok(_) => Status::new(ServerState::Running, endpoint, None),
                    Err(error) => Status::new(ServerState::Unreachable, format!("{error:#}"), None),
                }
            }
            EngineKind::Docker => match self.container_state() {
                Ok(Some(true)) => {
                    Status::new(ServerState::Running, format!("container {}", self.container_name()), None)
                }
                Ok(Some(false)) => Status::new(
                    ServerState::Stopped,
                    format!("container {} stopped", self.container_name()),
                    Some(crate::engine::NEXT_UP),
                ),
                Ok(None) => Status::new(ServerState::Absent, "no container", Some(crate::engine::NEXT_SETUP)),
                Err(error) => {
                    Status::new(ServerState::Unreachable, format!("{error:#}"), Some(crate::engine::NEXT_UP))
                }
            },
            _ => match self.native_pid() {
                Some(pid) => Status::new(
                    ServerState::Running,
                    format!("redis-server pid {pid}, {}", self.dir.display()),
                    None,
                ),
                None if self.dir.join(acl::ACL_FILE).exists() => Status::new(
                    ServerState::Stopped,
                    format!("{} kept", self.dir.display()),
                    Some(crate::engine::NEXT_UP),
                ),
                None => {
                    Status::new(ServerState::Absent, "no data directory", Some(crate::engine::NEXT_SETUP))
                }
            },
        }
    }

    /// Whether this tool made a server here (native: its folder; docker: its container or volume).
    pub fn exists(&self) -> Result<bool> {
        match self.kind {
            EngineKind::External => Ok(false),
            EngineKind::Docker => Ok(self.container_state()?.is_some() || self.volume_exists()?),
            _ => Ok(self.dir.exists()),
        }
    }

    /// Removes the server and its data (native and docker).
    pub fn destroy(&self) -> Result<()> {
        match self.kind {
            EngineKind::External => Ok(()),
            EngineKind::Docker => {
                if self.container_state()?.is_some() {
                    docker(&["rm", "--force", &self.container_name()])?;
                }
                if self.volume_exists()? {
                    docker(&["volume", "rm", &self.volume()])?;
                }
                Ok(())
            }
            _ => {
                self.stop()?;
                match std::fs::remove_dir_all(&self.dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(e).with_context(|| format!("delete {}", self.dir.display()))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    fn wait_ready(&self, credentials: &Credentials) -> Result<Connection> {
        let admin = self.admin(credentials)?;
        let start = Instant::now();
        loop {
            let attempt = admin.open(Duration::from_secs(1)).and_then(|mut c| c.call(&["PING"]).map(|_| c));
            match attempt {
                Ok(mut connection) => {
                    connection.set_timeout(WORK)?;
                    return Ok(connection);
                }
                Err(error) if start.elapsed() > Duration::from_secs(20) => {
                    return Err(error.context(format!(
                        "Redis did not accept connections within 20 s{}",
                        self.log_tail()
                    )));
                }
                Err(_) => {}
            }
            let stopped = match self.kind {
                EngineKind::Docker => {
                    start.elapsed() > Duration::from_secs(1) && self.container_state()? != Some(true)
                }
                _ => start.elapsed() > Duration::from_millis(300) && self.native_pid().is_none(),
            };
            if stopped {
                bail!("redis-server stopped while starting{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_tail(&self) -> String {
        let text = match self.kind {
            EngineKind::Docker => duct::cmd("docker", ["logs", "--tail", "15", &self.container_name()])
                .stderr_to_stdout()
                .unchecked()
                .read()
                .unwrap_or_default(),
            _ => std::fs::read_to_string(self.log()).unwrap_or_default(),
        };
        if text.trim().is_empty() {
            String::new()
        } else {
            format!("; its log ends:\n{}", crate::engine::tail(&text, 15))
        }
    }

    fn refuse_busy_port(&self) -> Result<()> {
        if let Some(holder) = crate::os::port_holder(self.port) {
            bail!(
                "port {} on 127.0.0.1, where this project's Redis server would listen, is taken by {holder}: stop that \
                 program, or choose a free port with `port` in [workspace.metadata.xtask.redis] or XTASK_REDIS_PORT",
                self.port
            );
        }
        Ok(())
    }

    // The native engine.

    fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn native_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir.join("redis.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        let ours = crate::procs::alive(pid)
            && crate::procs::name(pid).is_some_and(|n| n.starts_with("redis-server"));
        ours.then_some(pid)
    }

    fn native_up(&self, credentials: &mut Credentials) -> Result<UpOutcome> {
        if let Some(pid) = self.native_pid() {
            bail!(
                "the Redis server of this project runs (pid {pid}) but does not let its admin in on port {}: if \
                 the port changed, `cargo xtask db-down` stops it and `cargo xtask setup` starts it on the new \
                 one; else `cargo xtask teardown` removes it and its data (see {})",
                self.port,
                self.log().display()
            );
        }
        let binary = self.redis_server_binary()?;
        self.refuse_busy_port()?;
        crate::fsafe::private_dir(&self.data_dir, "the data directory")?;
        crate::fsafe::private_dir(&self.dir, "the Redis data directory")?;
        let holder = self.dir.display().to_string();
        let config = config(&self.dir, self.port, self.kind);
        let outcome = self.write_files(&self.dir, &config, &holder, credentials)?;
        // It forks into the background (daemonize) once its configuration is read.
        let started = duct::cmd(&binary, [self.dir.join("redis.conf")])
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .with_context(|| format!("run {}", binary.display()))?;
        if !started.status.success() {
            let said = String::from_utf8_lossy(&started.stderr).to_string()
                + &String::from_utf8_lossy(&started.stdout);
            bail!(
                "{} did not start ({}): {}{}",
                binary.display(),
                started.status,
                said.trim(),
                self.log_tail()
            );
        }
        Ok(outcome)
    }

    /// Writes the configuration, and the ACL file with the admin when there is none yet (a kept
    /// one holds the users). Returns whether the server is new.
    /// `holder`: where the server's data is, for the message when its admin's password is lost.
    fn write_files(
        &self,
        dir: &Path,
        config: &str,
        holder: &str,
        credentials: &mut Credentials,
    ) -> Result<UpOutcome> {
        let acl_file = dir.join(acl::ACL_FILE);
        let new = !acl_file.exists();
        if new {
            let password = credentials.redis_admin_or_new()?;
            crate::fsafe::write_atomically(&acl_file, acl::initial_acl_file(&password).as_bytes(), 0o600)?;
        } else if credentials.redis_admin().is_none() {
            bail!(
                "{holder} holds a Redis server whose admin password is no longer on file: `cargo xtask teardown` \
                 removes it and its data, then `cargo xtask setup` makes it anew"
            );
        }
        crate::fsafe::write_atomically(&dir.join("redis.conf"), config.as_bytes(), 0o600)?;
        Ok(if new { UpOutcome::Created } else { UpOutcome::Started })
    }

    fn redis_server_binary(&self) -> Result<PathBuf> {
        let found = match &self.binary {
            Some(path) if path.is_file() => Some(path.clone()),
            Some(path) => bail!(
                "XTASK_REDIS_SERVER={} names no file: point it at a redis-server binary, or unset it",
                path.display()
            ),
            None => which::which("redis-server").ok(),
        };
        let Some(binary) = found else {
            bail!(
                "redis-server not found in PATH, and this project uses Redis: run again with --provision (as root \
                 on Debian it installs the redis-server package), or install it:\n  Debian/Ubuntu: sudo apt-get \
                 install redis-server\n  Fedora: sudo dnf install redis\n  macOS: brew install redis\n\
                 or give its path with XTASK_REDIS_SERVER"
            );
        };
        let version = duct::cmd(&binary, ["--version"]).stderr_null().unchecked().read().unwrap_or_default();
        let major =
            version.split("v=").nth(1).and_then(|v| v.split('.').next()).and_then(|m| m.parse::<u32>().ok());
        match major {
            Some(major) if major >= acl::MIN_MAJOR => Ok(binary),
            _ => bail!(
                "{} is not Redis {} or newer ({}), which per-service users confined to their keys need: install \
                 a newer redis-server",
                binary.display(),
                acl::MIN_MAJOR,
                version.trim()
            ),
        }
    }

    // The docker engine.

    fn container_name(&self) -> String {
        format!("{}-redis", self.project)
    }

    fn volume(&self) -> String {
        format!("{}-redisdata", self.project)
    }

    /// `Some(running)`, or `None` when there is no container. One of another data directory (its
    /// label) is refused: nothing of it is touched.
    fn container_state(&self) -> Result<Option<bool>> {
        Ok(self.container()?.map(|c| c.running))
    }

    fn container(&self) -> Result<Option<Container>> {
        let format = "{{.State.Running}}\t{{index .Config.Labels \"xtask.data-dir\"}}\t\
                      {{range .HostConfig.PortBindings}}{{range .}}{{.HostPort}}{{end}}{{end}}";
        let output = docker_output(&["container", "inspect", "--format", format, &self.container_name()])?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("No such") {
                return Ok(None);
            }
            bail!("the Docker engine does not answer ({}): start it, then run again", stderr.trim());
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = text.trim_end_matches('\n').split('\t');
        let (running, data_dir, port) = (fields.next(), fields.next(), fields.next());
        if data_dir != Some(self.data_dir.to_string_lossy().as_ref()) {
            bail!(
                "a container named {} exists that is not this project's Redis (it was not made for {}): it is left \
                 alone; remove it, or give this project another `project` name",
                self.container_name(),
                self.data_dir.display()
            );
        }
        Ok(Some(Container { running: running == Some("true"), port: port.and_then(|p| p.parse().ok()) }))
    }

    fn docker_up(&self, credentials: &mut Credentials) -> Result<UpOutcome> {
        match self.container_state()? {
            Some(true) => bail!(
                "the Redis container {} runs but does not let its admin in on port {}: if the port changed, \
                 `cargo xtask db-down` stops it and `cargo xtask setup` starts it on the new one; else \
                 `cargo xtask teardown` removes it and its data",
                self.container_name(),
                self.port
            ),
            // Published on another port (it changed since): made again, on the kept volume.
            Some(false) if self.container()?.and_then(|c| c.port) != Some(self.port) => {
                docker(&["rm", &self.container_name()])?;
                self.refuse_busy_port()?;
                self.docker_create()?;
            }
            Some(false) => self.refuse_busy_port()?,
            None => {
                self.refuse_busy_port()?;
                self.docker_create()?;
            }
        }
        let outcome = self.docker_supply_files(credentials)?;
        docker(&["start", &self.container_name()])?;
        Ok(outcome)
    }

    fn docker_create(&self) -> Result<()> {
        let volume = self.volume();
        let labels = [
            format!("xtask.project={}", self.project),
            format!("xtask.data-dir={}", self.data_dir.display()),
        ];
        if !self.volume_exists()? {
            docker(&["volume", "create", "--label", &labels[0], "--label", &labels[1], &volume])?;
        }
        let publish = format!("127.0.0.1:{}:6379", self.port);
        let mount = format!("{volume}:/data");
        let container = self.container_name();
        let args = [
            "create",
            "--name",
            &container,
            "--label",
            &labels[0],
            "--label",
            &labels[1],
            "--publish",
            &publish,
            "--volume",
            &mount,
            &self.image,
            "redis-server",
            "/data/redis.conf",
        ];
        docker(&args).map(drop).map_err(|error| {
            error.context(format!(
                "create the Redis container from image {} (set another with `image` in \
                 [workspace.metadata.xtask.redis] or XTASK_REDIS_IMAGE)",
                self.image
            ))
        })
    }

    /// Before every start (a run killed after `docker create` left the volume without them): the
    /// configuration, and the ACL file with the admin when the volume has none (a new server).
    fn docker_supply_files(&self, credentials: &mut Credentials) -> Result<UpOutcome> {
        let staging = crate::os::TempDir::new("redis-files")?;
        let container = self.container_name();
        let kept = staging.path().join(acl::ACL_FILE);
        // Copied out and back unchanged when the volume has one: the users it holds are kept. Only
        // its absence makes the server new; any other failure stops here.
        let copied =
            docker(&["cp", &format!("{container}:/data/{}", acl::ACL_FILE), &kept.display().to_string()]);
        if let Err(error) = copied
            && !format!("{error:#}").contains("Could not find the file")
        {
            return Err(error.context("read the Redis users kept in the volume"));
        }
        let holder = format!("the volume {}", self.volume());
        let config = config(Path::new("/data"), 6379, self.kind);
        let outcome = self.write_files(staging.path(), &config, &holder, credentials)?;
        docker(&["cp", &format!("{}/.", staging.path().display()), &format!("{container}:/data/")])?;
        Ok(outcome)
    }
}

impl Server {
    /// Whether the volume exists; one made for another data directory (its label) is refused.
    fn volume_exists(&self) -> Result<bool> {
        let format = "{{index .Labels \"xtask.data-dir\"}}";
        let Ok(label) = docker(&["volume", "inspect", "--format", format, &self.volume()]) else {
            return Ok(false);
        };
        if label.trim() != self.data_dir.to_string_lossy() {
            bail!(
                "a Docker volume named {} exists that is not this project's Redis data (it was not made for {}): \
                 it is left alone; remove it, or give this project another `project` name",
                self.volume(),
                self.data_dir.display()
            );
        }
        Ok(true)
    }
}

/// What `docker container inspect` says of the Redis container.
struct Container {
    running: bool,
    /// The host port it is published on.
    port: Option<u16>,
}

/// The server's configuration, written at every start (edits are lost): its data and users in
/// `dir`, one database, the append-only file on.
fn config(dir: &Path, port: u16, engine: EngineKind) -> String {
    // Quoted: a data directory may hold spaces.
    let path = |name: &str| {
        let path = if name.is_empty() { dir.to_path_buf() } else { dir.join(name) };
        format!("\"{}\"", path.display().to_string().replace('\\', "\\\\").replace('"', "\\\""))
    };
    let listen = match engine {
        // Inside the container on every interface; only 127.0.0.1 of the host is published.
        EngineKind::Docker => "bind * -::*\nprotected-mode no\n".to_owned(),
        _ => format!(
            "bind 127.0.0.1\nprotected-mode yes\ndaemonize yes\npidfile {}\nlogfile {}\n",
            path("redis.pid"),
            path("redis.log")
        ),
    };
    format!(
        "# Written by cargo xtask at every start: edits are lost.\n{listen}port {port}\ndatabases 1\n\
         dir {}\naclfile {}\nappendonly yes\n",
        path(""),
        path(acl::ACL_FILE)
    )
}

/// `redis[s]://[user[:password]@]host[:port][/0]`; a URL without a user logs in as `default`.
/// `rediss://` verifies the server's certificate against `ca`, else the system's roots.
pub fn parse_url(url: &str, ca: Option<&Path>) -> Result<Login> {
    let (tls, mut login) = url_parts(url)?;
    if tls {
        login.tls = Some(crate::tls::verified_client(ca).context("TLS for rediss://")?);
    }
    Ok(login)
}

/// Whether the URL asks for TLS, and its login without the TLS configuration.
fn url_parts(url: &str) -> Result<(bool, Login)> {
    let problem = |what: &str| anyhow::anyhow!("XTASK_REDIS_URL (the external Redis server): {what}");
    let (rest, tls) = match url.split_once("://") {
        Some(("redis", rest)) => (rest, false),
        Some(("rediss", rest)) => (rest, true),
        _ => return Err(problem("expected redis://user:password@host:port (or rediss:// for TLS)")),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !matches!(path, "" | "0") {
        return Err(problem("a database other than 0 is not supported: the keys are kept apart by prefix"));
    }
    let (credentials, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| problem("the port is not a number"))?),
        None => (host_port, 6379),
    };
    if host.is_empty() {
        return Err(problem("no host"));
    }
    let user = if user.is_empty() { "default".to_owned() } else { crate::conn::percent_decode(user) };
    let password = crate::conn::percent_decode(password);
    Ok((tls, Login { host: host.to_owned(), port, user, password, tls: None }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_urls() {
        let login = parse_url("redis://ad%40min:p%3Ass@cache.internal:7000/0", None).unwrap();
        assert_eq!((login.user.as_str(), login.password.as_str()), ("ad@min", "p:ss"));
        assert_eq!((login.host.as_str(), login.port), ("cache.internal", 7000));
        assert_eq!(parse_url("redis://localhost", None).unwrap().user, "default");
        assert!(login.redacted_url().contains("***") && !login.redacted_url().contains("p%3Ass"));
        assert!(parse_url("rediss://h", None).unwrap().url().starts_with("rediss://default:@h:6379"));
        for bad in ["http://x", "redis://h:port", "redis://h/3", "redis://"] {
            assert!(parse_url(bad, None).is_err(), "{bad}");
        }
    }
}
