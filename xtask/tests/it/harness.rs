//! A throwaway workspace with its own project, port and data directory, and helpers to run xtask in it.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// The image the docker tests run: built from Debian packages by ci/test-image/build.sh.
pub fn test_image() -> String {
    std::env::var("XTASK_TEST_IMAGE").unwrap_or_else(|_| "xtask-postgres-test:15".into())
}

/// The test image of another major: the one of XTASK_TEST_IMAGES (which `cargo xtask ci` sets
/// from `test-image`) tagged `major`, else xtask-postgres-test:<major>. Fails when it is absent.
pub fn test_image_of(major: u32) -> String {
    let tag = format!(":{major}");
    let image = std::env::var("XTASK_TEST_IMAGES")
        .unwrap_or_default()
        .split_whitespace()
        .find(|image| image.ends_with(&tag))
        .map_or_else(|| format!("xtask-postgres-test{tag}"), str::to_owned);
    let present = Command::new("docker").args(["image", "inspect", &image]).output();
    assert!(
        present.is_ok_and(|out| out.status.success()),
        "the docker image {image} is missing: build it with `sudo ci/test-image/build.sh {image}`, or run \
         the tests through `cargo xtask ci --provision`, which builds it"
    );
    image
}

/// The Redis image the docker tests run: the one of XTASK_TEST_IMAGES named xtask-redis-test, else
/// xtask-redis-test:7 (built from Debian's redis-server by ci/test-image/build.sh).
pub fn redis_test_image() -> String {
    std::env::var("XTASK_TEST_IMAGES")
        .unwrap_or_default()
        .split_whitespace()
        .find(|image| image.starts_with("xtask-redis-test:"))
        .map_or_else(|| "xtask-redis-test:7".into(), str::to_owned)
}

pub struct Project {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub engine: String,
    pub port: u16,
    pub env: Vec<(String, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Project {
    /// A new git repository holding a Cargo workspace, configured through XTASK_* variables.
    pub fn new(engine: &str) -> Project {
        if engine == "docker" {
            require_docker();
        }
        let dir = tempfile::Builder::new().prefix("xtask-it-").tempdir().unwrap();
        // As root the server runs as `postgres`, which must be able to enter the data directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[workspace]\nmembers = []\n\n[workspace.metadata.xtask]\n",
        )
        .unwrap();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("it{}_{n}", std::process::id());
        let port = free_port();
        let mut project = Project {
            dir,
            name: name.clone(),
            engine: engine.into(),
            port,
            env: vec![
                ("XTASK_PROJECT".into(), name),
                ("XTASK_ENGINE".into(), engine.into()),
                ("XTASK_PORT".into(), port.to_string()),
                ("XTASK_IMAGE".into(), test_image()),
                // Used only by the projects that ask for Redis (the example services do).
                ("XTASK_REDIS_PORT".into(), free_port().to_string()),
                ("XTASK_REDIS_IMAGE".into(), redis_test_image()),
                // A strong admin password of its own (a weak one is warned about); the tests of
                // the generated default unset it.
                ("XTASK_PASSWORD".into(), random_password()),
            ],
        };
        let data = project.data_dir().to_str().unwrap().to_owned();
        project.set("XTASK_DATA_DIR", &data);
        if engine == "external" {
            // Names as one developer sees them; the tests of several developers turn it back on.
            project.set("XTASK_PER_DEVELOPER", "0");
        }
        project.git(&["init", "--quiet", "--initial-branch=main"]);
        project
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    pub fn unset(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Adds a service crate declaring a database: `declaration` is the body of its
    /// `[package.metadata.xtask.database]` table. Only the manifest matters to xtask.
    pub fn service(&self, crate_name: &str, declaration: &str) {
        let root = self.path().join("Cargo.toml");
        let text = std::fs::read_to_string(&root).unwrap();
        std::fs::write(&root, text.replace("members = []", "members = [\"services/*\"]")).unwrap();
        self.write(
            &format!("services/{crate_name}/Cargo.toml"),
            &format!(
                "[package]\nname = \"{crate_name}\"\nversion = \"0.1.0\"\n\n\
                 [package.metadata.xtask.database]\n{declaration}\n"
            ),
        );
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git").args(args).current_dir(self.path()).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_in(self.path(), args)
    }

    /// Runs xtask with this project's settings in another folder (another workspace).
    pub fn run_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.command_in(dir, args).output().unwrap()
    }

    /// xtask with this project's settings (and none of the caller's XTASK_* or CI branch
    /// variables), not yet started: for tests that spawn it and watch it run.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in(self.path(), args)
    }

    fn command_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(XTASK);
        command.args(args).current_dir(dir);
        for (key, _) in std::env::vars() {
            let ci_branch =
                ["GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"].contains(&key.as_str());
            if key.starts_with("XTASK_") || ci_branch {
                command.env_remove(key);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs xtask, asserts success, returns stdout; stderr is kept for `ok_err`.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_err(args).0
    }

    pub fn ok_err(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "xtask {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        (stdout, stderr)
    }

    /// Runs xtask, asserts a failure with exit code 1, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "xtask {args:?} should fail:\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    pub fn status(&self, branch: &str) -> Value {
        serde_json::from_str(&self.ok(&["db-status", "--json", "--branch", branch])).unwrap()
    }

    /// db-status for the branch the project itself resolves (git, env, CI variables).
    pub fn status_current(&self) -> Value {
        serde_json::from_str(&self.ok(&["db-status", "--json"])).unwrap()
    }

    pub fn server_state(&self) -> String {
        self.status("main")["server"]["state"].as_str().unwrap().to_owned()
    }

    /// Whether this branch's database exists, as db-status reports it.
    pub fn db_exists(&self, branch: &str) -> bool {
        let status = self.status(branch);
        status["databases"][0]["exists"].as_bool().expect("server is running")
    }

    pub fn endpoint(&self, branch: &str) -> String {
        let url = self.ok(&["db-endpoint", "--branch", branch]);
        assert_eq!(url.lines().count(), 1, "{url:?}");
        url.trim().to_owned()
    }

    /// A client on this branch's database, through the URL db-endpoint prints.
    pub fn client(&self, branch: &str) -> postgres::Client {
        postgres::Client::connect(&self.endpoint(branch), postgres::NoTls).unwrap()
    }

    /// The superuser the engines create (XTASK_USER is not set by the tests): with this project's
    /// XTASK_PASSWORD, or else the generated one in the credentials file.
    pub fn admin_url(&self, db: &str) -> String {
        let password = match self.env.iter().find(|(k, _)| k == "XTASK_PASSWORD") {
            Some((_, password)) => password.clone(),
            None => self.generated_admin_password().expect("the credentials file holds the admin password"),
        };
        let encoded: String = password
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        format!("postgres://postgres:{encoded}@127.0.0.1:{}/{db}", self.port)
    }

    /// A project on another project's server (the external engine's tests): the harness's own admin
    /// connection goes to that server, with its password.
    pub fn use_server(&mut self, server: &Project) {
        self.port = server.port;
        match server.env.iter().find(|(k, _)| k == "XTASK_PASSWORD") {
            Some((_, password)) => self.set("XTASK_PASSWORD", &password.clone()),
            None => self.env.retain(|(k, _)| k != "XTASK_PASSWORD"),
        }
    }

    /// The admin password xtask generated and keeps in `<data dir>/.xtask-credentials.toml`.
    pub fn generated_admin_password(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.data_dir().join(".xtask-credentials.toml")).ok()?;
        let admin = text.split("[admin]").nth(1)?;
        let line = admin.lines().find(|l| l.trim_start().starts_with("password"))?;
        Some(line.split('"').nth(1)?.to_owned())
    }

    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.admin_url("postgres"), postgres::NoTls).unwrap()
    }

    /// Every database on the server whose name starts with this project's name, but its pristine
    /// templates (`<base>__tpl_<hash>`, see templates.rs).
    pub fn databases_on_server(&self) -> Vec<String> {
        let rows = self
            .admin()
            .query(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1) \
                 AND datname NOT LIKE '%\\_\\_tpl\\_%' ORDER BY 1",
                &[&self.name],
            )
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }
}

impl Project {
    /// This project's pristine templates on the server.
    pub fn templates_on_server(&self) -> Vec<String> {
        let rows = self
            .admin()
            .query(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1) \
                 AND datname LIKE '%\\_\\_tpl\\_%' ORDER BY 1",
                &[&self.name],
            )
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Every database on the server, this project's or not.
    pub fn databases_on_server_all(&self) -> Vec<String> {
        let rows = self.admin().query("SELECT datname FROM pg_database ORDER BY 1", &[]).unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// A connection to this branch's database of service `db`, as its role.
    pub fn service_client(&self, db: &str) -> postgres::Client {
        let url = self.ok(&["db-endpoint", "--db", db]);
        postgres::Client::connect(url.trim(), postgres::NoTls).unwrap()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if self.engine == "external" {
            return;
        }
        let out = self.run(&["teardown"]);
        if !out.status.success() && !std::thread::panicking() {
            eprintln!("teardown of {} failed: {}", self.name, String::from_utf8_lossy(&out.stderr));
        }
        if self.engine == "docker" {
            let container = format!("{}-postgres", self.name);
            let volume = format!("{}-pgdata", self.name);
            let _ = Command::new("docker")
                .args(["rm", "-f", &container, &format!("{}-redis", self.name)])
                .output();
            let _ = Command::new("docker")
                .args(["volume", "rm", &volume, &format!("{}-redisdata", self.name)])
                .output();
        }
    }
}

/// A native server shared by the tests that need only some server (the prepare corpus, through the
/// external engine): made on first use, torn down when the test binary exits, so that each of
/// them does not pay for initdb and a server start.
pub fn shared_server() -> &'static Project {
    static SHARED: std::sync::OnceLock<Project> = std::sync::OnceLock::new();
    extern "C" fn tear_down_shared() {
        if let Some(server) = SHARED.get() {
            let _ = server.run(&["teardown"]);
            let _ = std::fs::remove_dir_all(server.path());
        }
    }
    SHARED.get_or_init(|| {
        let mut server = Project::new("native");
        // XTASK_TEST_POSTGRES=18 runs what uses this server (the prepare corpus) on that major.
        if let Ok(major) = std::env::var("XTASK_TEST_POSTGRES") {
            server.set("XTASK_POSTGRES", &major);
        }
        server.ok(&["db-up"]);
        // SAFETY: registers a plain function, run once at the process's normal exit.
        unsafe { libc::atexit(tear_down_shared) };
        server
    })
}

/// A project of the external engine on `server`, with its admin URL.
pub fn project_on(server: &Project) -> Project {
    let mut p = Project::new("external");
    p.use_server(server);
    p.set("XTASK_DATABASE_URL", &p.admin_url("postgres"));
    p
}

/// 128 random bits as hex, from the kernel.
pub fn random_password() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

pub fn require_docker() {
    let version = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    let answers = version.as_ref().is_ok_and(|o| o.status.success());
    assert!(
        answers,
        "the docker tests need a running Docker engine: start dockerd (`bash .ci/run` installs and starts one)"
    );
    let image = Command::new("docker").args(["image", "inspect", &test_image()]).output().unwrap();
    assert!(
        image.status.success(),
        "the docker tests need the image {}: build it with `bash ci/test-image/build.sh`",
        test_image()
    );
}

/// Whether a process runs (a zombie waiting for its parent, or its new one, to reap it has ended).
pub fn alive(pid: i32) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    text.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

pub fn contains(haystack: &str, needle: &str) {
    assert!(haystack.contains(needle), "expected {needle:?} in:\n{haystack}");
}
