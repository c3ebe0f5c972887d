//! Redis beside PostgreSQL: real redis-server processes and a real Redis container, reached with the
//! `redis` crate services use. Two services (`alpha` with a database, `beta` with Redis only) on
//! two branches: whose keys each user reaches, what it may run, and the life cycle around them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Project, alive, contains, free_port, random_password};

/// A project whose two services use Redis.
fn redis_project(engine: &str) -> Project {
    let p = Project::new(engine);
    p.service("alpha", "name = \"alpha\"\n\n[package.metadata.xtask]\nredis = true");
    p.write(
        "services/beta/Cargo.toml",
        "[package]\nname = \"beta\"\nversion = \"0.1.0\"\n\n[package.metadata.xtask]\nredis = true\n",
    );
    p.git(&["add", "-A"]);
    p.git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "services"]);
    p
}

fn env_value(p: &Project, key: &str) -> String {
    let vars = dotenvy::from_path_iter(p.path().join(".env")).unwrap();
    let found = vars.map(Result::unwrap).find(|(k, _)| k == key);
    found.unwrap_or_else(|| panic!("{key} is not in .env")).1
}

/// The URL and prefix setup wrote for `service`.
fn service_login(p: &Project, service: &str) -> (String, String) {
    let upper = service.to_ascii_uppercase();
    (env_value(p, &format!("{upper}_REDIS_URL")), env_value(p, &format!("{upper}_REDIS_PREFIX")))
}

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap_or_else(|e| panic!("log in to Redis: {e}"))
}

fn run(connection: &mut redis::Connection, words: &[&str]) -> redis::RedisResult<redis::Value> {
    redis::cmd(words[0]).arg(&words[1..]).query(connection)
}

fn refused(connection: &mut redis::Connection, words: &[&str]) {
    match run(connection, words) {
        Err(error) => assert_eq!(error.code(), Some("NOPERM"), "{words:?}: {error}"),
        Ok(value) => panic!("{words:?} was allowed: {value:?}"),
    }
}

fn get(connection: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(connection).unwrap()
}

/// The Redis admin of a server this tool made, from the credentials file.
fn admin_url(p: &Project) -> String {
    let text = std::fs::read_to_string(p.data_dir().join(".xtask-credentials.toml")).unwrap();
    let file: toml::Value = toml::from_str(&text).unwrap();
    let password = file["redis_admin"].as_str().expect("a Redis admin password on file");
    let port = &p.env.iter().find(|(k, _)| k == "XTASK_REDIS_PORT").unwrap().1;
    format!("redis://xtask:{password}@127.0.0.1:{port}/0")
}

fn login_fails(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    match client.get_connection() {
        Err(error) => error.to_string(),
        Ok(_) => panic!("the login {url} still works"),
    }
}

pub fn isolation_and_life_cycle(engine: &str) {
    let p = redis_project(engine);
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "created and started");
    contains(&err, &format!("created Redis user {}_alpha (keys under {}_alpha:)", p.name, p.name));
    let (main_alpha, main_alpha_prefix) = service_login(&p, "alpha");
    assert_eq!(env_value(&p, "REDIS_URL"), main_alpha, "REDIS_URL is the first service's");
    let mut alpha = connect(&main_alpha);
    let main_key = format!("{main_alpha_prefix}k");
    run(&mut alpha, &["SET", &main_key, "main"]).unwrap();
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, "nothing to do");

    // Another branch: other users, other prefixes; neither sees the other's keys.
    p.git(&["checkout", "-q", "-b", "feature/x"]);
    p.ok(&["setup"]);
    let (feature_alpha, feature_prefix) = service_login(&p, "alpha");
    assert_ne!(feature_alpha, main_alpha);
    assert!(feature_prefix.starts_with(&format!("{}_alpha_feature_x__", p.name)), "{feature_prefix}");
    let mut feature = connect(&feature_alpha);
    refused(&mut feature, &["GET", &main_key]);
    assert_eq!(get(&mut feature, &format!("{feature_prefix}k")), None);
    run(&mut feature, &["SET", &format!("{feature_prefix}k"), "feature"]).unwrap();

    // Another service cannot read, write or delete alpha's keys, nor run what reaches past its prefix.
    let (beta_url, beta_prefix) = service_login(&p, "beta");
    let mut beta = connect(&beta_url);
    let alpha_key = format!("{feature_prefix}k");
    refused(&mut beta, &["GET", &alpha_key]);
    refused(&mut beta, &["SET", &alpha_key, "x"]);
    refused(&mut beta, &["DEL", &alpha_key]);
    run(&mut beta, &["SET", &format!("{beta_prefix}own"), "1"]).unwrap();
    refused(&mut beta, &["RENAME", &format!("{beta_prefix}own"), &format!("{feature_prefix}stolen")]);
    refused(&mut beta, &["PUBLISH", &format!("{feature_prefix}chan"), "x"]);
    for words in [
        &["FLUSHALL"][..],
        &["FLUSHDB"],
        &["CONFIG", "GET", "*"],
        &["CONFIG", "SET", "appendonly", "no"],
        &["KEYS", "*"],
        &["KEYS", &format!("{beta_prefix}*")],
        &["SCAN", "0"],
        &["RANDOMKEY"],
        &["DBSIZE"],
        &["ACL", "LIST"],
        &["ACL", "SETUSER", "evil", "on", ">x", "~*", "+@all"],
        &["EVAL", "return redis.call('GET', KEYS[1])", "1", &alpha_key],
        &["SELECT", "1"],
        &["SHUTDOWN"],
        &["MONITOR"],
        &["CLIENT", "LIST"],
        &["CLIENT", "KILL", "USER", "xtask"],
        &["SWAPDB", "0", "1"],
        &["MIGRATE", "127.0.0.1", "1", &alpha_key, "0", "1"],
        // SORT is refused whole: its BY and GET patterns read keys it does not name.
        &["SORT", &format!("{beta_prefix}own"), "BY", &format!("{feature_prefix}*")],
        // Another database, where no prefix guards and wipe never looks.
        &["COPY", &format!("{beta_prefix}own"), &format!("{beta_prefix}copy"), "DB", "1"],
        // Client-side caching's broadcast mode would report every key changed on the server.
        &["CLIENT", "TRACKING", "ON", "BCAST"],
    ] {
        refused(&mut beta, words);
    }
    for words in [&["PSUBSCRIBE", "*"][..], &["SUBSCRIBE", "__keyspace@0__:*"], &["SSUBSCRIBE", &alpha_key]] {
        refused(&mut connect(&beta_url), words);
    }
    assert_eq!(get(&mut feature, &alpha_key).as_deref(), Some("feature"));

    // db-status and branches show each branch's keys.
    let status = p.status_current();
    let users = status["redis"]["users"].as_array().unwrap();
    assert_eq!(status["redis"]["state"], "running");
    assert_eq!((users[0]["service"].as_str(), users[0]["keys"].as_u64()), (Some("alpha"), Some(1)));
    assert_eq!((users[1]["service"].as_str(), users[1]["keys"].as_u64()), (Some("beta"), Some(1)));
    assert!(users[0]["memory_bytes"].as_u64().unwrap() > 0);
    let branches: serde_json::Value = serde_json::from_str(&p.ok(&["branches", "--json"])).unwrap();
    let by_branch = |name: &str| {
        let all = branches["redis"].as_array().unwrap();
        all.iter().find(|b| b["branch"] == name).unwrap_or_else(|| panic!("{name} in {all:?}"))["keys"]
            .as_u64()
    };
    assert_eq!((by_branch("main"), by_branch("feature/x")), (Some(1), Some(2)));

    // Wipe of this branch: its users and keys go, the other branch's stay.
    let (_, err) = p.ok_err(&["wipe"]);
    contains(&err, "and their 2 key(s)");
    login_fails(&feature_alpha);
    assert_eq!(get(&mut alpha, &main_key).as_deref(), Some("main"));
    p.ok(&["setup"]);
    let mut feature = connect(&service_login(&p, "alpha").0);
    assert_eq!(get(&mut feature, &alpha_key), None, "a wiped branch starts with no keys");

    // A selector added by hand would let the user reach every key: setup sees it and remakes it.
    let mut admin = connect(&admin_url(&p));
    let feature_user = feature_prefix.trim_end_matches(':').to_owned();
    run(&mut admin, &["ACL", "SETUSER", &feature_user, "(~* +@all)"]).unwrap();
    let (_, err) = p.ok_err(&["setup"]);
    contains(&err, &format!("remade Redis user {feature_user}"));
    refused(&mut connect(&service_login(&p, "alpha").0), &["GET", &main_key]);

    // The data outlives db-down and db-up.
    p.ok(&["db-down"]);
    assert_eq!(p.status_current()["redis"]["state"], "stopped");
    p.ok(&["db-up"]);
    let mut alpha = connect(&main_alpha);
    assert_eq!(get(&mut alpha, &main_key).as_deref(), Some("main"));
    // The users read back from the server's ACL file are the ones made: nothing to remake.
    let (_, err) = p.ok_err(&["setup"]);
    assert!(!err.contains("Redis user"), "{err}");

    // Back on main, .env names main's users again; prune removes the users of a deleted branch.
    let feature_alpha = service_login(&p, "alpha").0;
    p.git(&["checkout", "-q", "main"]);
    p.ok(&["setup"]);
    assert_eq!(service_login(&p, "alpha"), (main_alpha.clone(), main_alpha_prefix.clone()));
    p.git(&["branch", "-q", "-D", "feature/x"]);
    let (_, err) = p.ok_err(&["prune"]);
    contains(&err, "removed 2 Redis user(s)");
    login_fails(&feature_alpha);
    assert_eq!(get(&mut alpha, &main_key).as_deref(), Some("main"));

    if engine == "docker" {
        // No password in what docker keeps of the container (its command, environment, labels).
        let inspect =
            Command::new("docker").args(["inspect", &format!("{}-redis", p.name)]).output().unwrap();
        let inspect = String::from_utf8_lossy(&inspect.stdout).into_owned();
        let credentials = std::fs::read_to_string(p.data_dir().join(".xtask-credentials.toml")).unwrap();
        let file: toml::Value = toml::from_str(&credentials).unwrap();
        let mut secrets = vec![file["redis_admin"].as_str().unwrap().to_owned()];
        secrets
            .extend(file["redis_users"].as_table().unwrap().values().map(|v| v.as_str().unwrap().to_owned()));
        for secret in secrets {
            assert!(!inspect.contains(&secret), "a password in `docker inspect`");
        }
        contains(&inspect, "\"/data/redis.conf\"");
    }

    // Another port after db-down: the same server and data there.
    p.ok(&["db-down"]);
    let mut p = p;
    p.set("XTASK_REDIS_PORT", &free_port().to_string());
    p.ok(&["setup"]);
    let moved = service_login(&p, "alpha").0;
    assert_ne!(moved, main_alpha);
    assert_eq!(get(&mut connect(&moved), &main_key).as_deref(), Some("main"));

    p.ok(&["teardown"]);
    login_fails(&moved);
    match engine {
        "docker" => {
            let out =
                Command::new("docker").args(["container", "inspect", &format!("{}-redis", p.name)]).output();
            assert!(!out.unwrap().status.success(), "teardown removed the container");
        }
        _ => assert!(!p.data_dir().join("redis").exists(), "teardown removed the data"),
    }
}

/// SIGKILL while setup makes a branch's users: the server runs the user's making as one transaction
/// with its record, so a user is whole or absent, and the next setup finishes the branch.
pub fn kill_during_setup(engine: &str) {
    let p = redis_project(engine);
    p.ok(&["setup"]);
    let mut admin = connect(&admin_url(&p));
    // Writes wait (EXEC with the user's record among them); reads, AUTH and ACL GETUSER do not.
    run(&mut admin, &["CLIENT", "PAUSE", "60000", "WRITE"]).unwrap();
    let mut child = p.command(&["setup", "--branch", "two"]).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    loop {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
        let waiting = list.lines().any(|line| {
            let flags = line.split(' ').find_map(|f| f.strip_prefix("flags=")).unwrap_or_default();
            line.contains(" user=xtask ") && flags.contains('x') && flags.contains('b')
        });
        if waiting {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "setup ended before it made the users");
        assert!(start.elapsed() < Duration::from_secs(60), "setup never reached the users:\n{list}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let user = format!("{}_alpha_two", p.name);
    let before: redis::Value = redis::cmd("ACL").arg("GETUSER").arg(&user).query(&mut admin).unwrap();
    assert_eq!(before, redis::Value::Nil, "nothing of the user before its transaction runs");
    child.kill().unwrap();
    child.wait().unwrap();
    run(&mut admin, &["CLIENT", "UNPAUSE"]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // Every user of the project is whole: its password is the one on file, its keys its prefix.
    let credentials: toml::Value =
        toml::from_str(&std::fs::read_to_string(p.data_dir().join(".xtask-credentials.toml")).unwrap())
            .unwrap();
    let users: Vec<String> = redis::cmd("ACL").arg("USERS").query(&mut admin).unwrap();
    for user in users.iter().filter(|u| u.starts_with(&p.name)) {
        let rules: String = redis::cmd("ACL")
            .arg("LIST")
            .query::<Vec<String>>(&mut admin)
            .unwrap()
            .into_iter()
            .find(|line| line.starts_with(&format!("user {user} ")))
            .unwrap();
        let password = credentials["redis_users"][user.as_str()]
            .as_str()
            .unwrap_or_else(|| panic!("{user}'s password on file"));
        let hash = sha256_hex(password);
        assert!(rules.contains(&format!("#{hash}")), "{rules}");
        assert!(
            rules.contains(&format!("~{user}:* ")) && rules.contains("-@all") && rules.contains("-flushall"),
            "{rules}"
        );
    }
    p.ok(&["setup", "--branch", "two"]);
    let (url, prefix) = service_login(&p, "alpha");
    let mut two = connect(&url);
    run(&mut two, &["SET", &format!("{prefix}k"), "1"]).unwrap();
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// SIGKILL at staggered moments of setup's Redis part (twelve services' users being made), each on
/// a branch whose databases exist already: whatever the moment, no user is without its record or
/// its password on file, none has rules other than a service's, and the next setup completes it.
pub fn kill_at_any_moment(engine: &str) {
    let p = Project::new(engine);
    let root = std::fs::read_to_string(p.path().join("Cargo.toml")).unwrap();
    p.write("Cargo.toml", &root.replace("members = []", "members = [\"services/*\"]"));
    for n in 0..12 {
        p.write(
            &format!("services/s{n}/Cargo.toml"),
            &format!(
                "[package]\nname = \"s{n}\"\nversion = \"0.1.0\"\n\n[package.metadata.xtask]\nredis = true\n"
            ),
        );
    }
    p.ok(&["setup"]);
    let mut admin = connect(&admin_url(&p));
    let branch = |n: usize| format!("k{n}");
    let without_redis = |n: usize| {
        let mut command = p.command(&["setup", "--branch", &branch(n)]);
        assert!(command.env("XTASK_REDIS", "0").status().unwrap().success());
    };
    // How long setup takes before its Redis part (a is a branch's second setup without Redis),
    // and with it (b): the kills are spread from a little before a to b.
    without_redis(0);
    let start = Instant::now();
    without_redis(0);
    let before_redis = start.elapsed();
    let start = Instant::now();
    p.ok(&["setup", "--branch", &branch(0)]);
    let whole = start.elapsed();
    let users_of = |admin: &mut redis::Connection, n: usize| -> usize {
        let users: Vec<String> = redis::cmd("ACL").arg("USERS").query(admin).unwrap();
        users.iter().filter(|u| u.ends_with(&format!("_k{n}"))).count()
    };
    let (mut partial, mut n) = (0, 0);
    // Until three kills landed while the users were being made (some made, some not), and at
    // least 16 kills in all: every other one at a moment spread over the run, the others as soon
    // as the branch's first user shows on the server.
    while partial < 3 || n < 16 {
        n += 1;
        assert!(n <= 80, "in {n} kills only {partial} landed among the users being made");
        without_redis(n);
        let mut child = p.command(&["setup", "--branch", &branch(n)]).stderr(Stdio::null()).spawn().unwrap();
        if n % 2 == 1 {
            let step = (n / 2 % 16) as u32;
            std::thread::sleep(
                before_redis * 9 / 10 + whole.saturating_sub(before_redis * 9 / 10) * step / 16,
            );
        } else {
            while users_of(&mut admin, n) == 0 && child.try_wait().unwrap().is_none() {}
        }
        let _ = child.kill();
        child.wait().unwrap();
        assert_every_user_whole(&p, &mut admin);
        let made = users_of(&mut admin, n);
        partial += usize::from(made > 0 && made < 12);
        p.ok(&["setup", "--branch", &branch(n)]);
        assert_eq!(users_of(&mut admin, n), 12, "the next setup finished the branch");
    }
    assert_every_user_whole(&p, &mut admin);
}

fn assert_every_user_whole(p: &Project, admin: &mut redis::Connection) {
    let credentials: toml::Value =
        toml::from_str(&std::fs::read_to_string(p.data_dir().join(".xtask-credentials.toml")).unwrap())
            .unwrap();
    // Read in one transaction: a killed setup's last commands may still be run by the server
    // while this reads, and two reads apart could see the user but not the record made with it.
    let (registry, lines): (std::collections::HashMap<String, String>, Vec<String>) = redis::pipe()
        .atomic()
        .cmd("HGETALL")
        .arg(format!("XTASK:{}:users", p.name))
        .cmd("ACL")
        .arg("LIST")
        .query(admin)
        .unwrap();
    for line in lines.iter().filter(|l| l.starts_with(&format!("user {}", p.name))) {
        let user = line.split(' ').nth(1).unwrap();
        assert!(registry.contains_key(user), "{user} has no record: {line}");
        let password = credentials["redis_users"].get(user).and_then(|v| v.as_str());
        let password = password.unwrap_or_else(|| panic!("{user}'s password is not on file"));
        assert!(line.contains(&format!("#{}", sha256_hex(password))), "{line}");
        assert!(line.contains(&format!(" ~{user}:* ")) && line.contains(&format!(" &{user}:* ")), "{line}");
        assert!(line.contains(" -@all ") && line.contains("-flushall") && line.contains("-keys"), "{line}");
    }
}

pub fn busy_port(engine: &str) {
    let mut p = redis_project(engine);
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    p.set("XTASK_REDIS_PORT", &port.to_string());
    let err = p.fails(&["setup"]);
    contains(
        &err,
        &format!("port {port} on 127.0.0.1, where this project's Redis server would listen, is taken by"),
    );
    contains(&err, "XTASK_REDIS_PORT");
    drop(listener);
    p.ok(&["setup"]);
}

/// Another local user reads nothing of the native server's files and gets nothing from the server
/// without a password; no password is on the server's command line.
#[test]
fn another_local_user_gets_nothing_of_the_native_server() {
    let attacker = crate::security_local::LocalUser::new();
    let p = redis_project("native");
    p.ok(&["setup"]);
    let dir = p.data_dir().join("redis");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.push(dir.join("appendonlydir"));
    for file in &files {
        let read = attacker.command("/bin/ls").arg("-l").arg(file).output().unwrap();
        assert!(!read.status.success(), "another user could look at {}", file.display());
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "{} is open to others", dir.display());
    let port = &p.env.iter().find(|(k, _)| k == "XTASK_REDIS_PORT").unwrap().1;
    for words in [&["PING"][..], &["AUTH", "default", ""], &["AUTH", "xtask", "xtask"]] {
        let out = attacker.command("/usr/bin/redis-cli").args(["-p", port]).args(words).output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("NOAUTH") || said.contains("WRONGPASS"), "{words:?}, as another user: {said}");
    }
    let pid: i32 = std::fs::read_to_string(dir.join("redis.pid")).unwrap().trim().parse().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let credentials = std::fs::read_to_string(p.data_dir().join(".xtask-credentials.toml")).unwrap();
    let file: toml::Value = toml::from_str(&credentials).unwrap();
    let mut secrets = vec![file["redis_admin"].as_str().unwrap().to_owned()];
    secrets.extend(file["redis_users"].as_table().unwrap().values().map(|v| v.as_str().unwrap().to_owned()));
    for secret in &secrets {
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(secret.as_str()),
            "a password on redis-server's command line"
        );
        for file in files.iter().filter(|f| f.is_file()) {
            let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
            assert!(
                !text.contains(secret.as_str()),
                "a password in {} (only its hash belongs there)",
                file.display()
            );
        }
    }
}

/// A project called `xtask` asking for Redis without services would name its user after the
/// server's admin: refused before anything is made.
#[test]
fn a_user_named_like_the_admin_is_refused() {
    let mut p = Project::new("native");
    p.set("XTASK_PROJECT", "xtask");
    p.set("XTASK_REDIS", "1");
    contains(&p.fails(&["setup"]), "would be named xtask, which is the server's admin");
}

#[test]
fn missing_redis_server_is_named_with_the_way_to_get_it() {
    let mut p = redis_project("native");
    p.set("XTASK_REDIS_SERVER", "/nonexistent/redis-server");
    contains(&p.fails(&["setup"]), "XTASK_REDIS_SERVER=/nonexistent/redis-server names no file");
    p.unset("XTASK_REDIS_SERVER");
    // No redis-server in PATH: the PostgreSQL part still finds its own binaries.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(which("git"), bin.path().join("git")).unwrap();
    p.set("PATH", bin.path().to_str().unwrap());
    let err = p.fails(&["setup"]);
    contains(&err, "redis-server not found in PATH");
    contains(&err, "--provision");
    contains(&err, "apt-get install redis-server");
}

fn which(program: &str) -> std::path::PathBuf {
    let out = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().into()
}

/// A Redis server as a team would run one (an admin user that may manage ACLs), for the external
/// engine; stopped on drop.
pub struct ExternalRedis {
    _dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    pub password: String,
}

impl ExternalRedis {
    pub fn start() -> ExternalRedis {
        ExternalRedis::start_with(false)
    }

    /// `tls`: TLS only (no plain port), with a certificate for localhost signed by the `ca.pem`
    /// of [`ExternalRedis::file`].
    pub fn start_with(tls: bool) -> ExternalRedis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let password = random_password();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("users.acl"),
            format!("user default off\nuser admin on >{password} ~* &* +@all\n"),
        )
        .unwrap();
        let mut config = format!("bind 127.0.0.1\ndir {d}\naclfile {d}/users.acl\nlogfile {d}/log\n");
        if tls {
            crate::tls::authority(dir.path(), "ca");
            crate::tls::authority(dir.path(), "other-ca");
            let names = "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n";
            crate::tls::signed(dir.path(), "server", "/CN=localhost", "ca", names);
            config += &format!(
                "port 0\ntls-port {port}\ntls-cert-file {d}/server.pem\ntls-key-file {d}/server.key\n\
                 tls-ca-cert-file {d}/ca.pem\ntls-auth-clients no\n"
            );
        } else {
            config += &format!("port {port}\n");
        }
        std::fs::write(dir.path().join("redis.conf"), config).unwrap();
        let child = Command::new("redis-server")
            .arg(dir.path().join("redis.conf"))
            .stdout(Stdio::null())
            .spawn()
            .expect("the external-engine tests need redis-server (`apt-get install redis-server`)");
        let server = ExternalRedis { _dir: dir, child, port, password };
        let start = Instant::now();
        while !server.answers() {
            assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    fn answers(&self) -> bool {
        match self.file("server.pem").exists() {
            false => redis::Client::open(self.admin_url()).unwrap().get_connection().is_ok(),
            true => self.cli(&self.admin_url().replace("redis://", "rediss://"), &["PING"]).contains("PONG"),
        }
    }

    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self._dir.path().join(name)
    }

    /// redis-cli over TLS (the tests' `redis` crate is built without it), the password in its
    /// environment; returns what it printed.
    fn cli(&self, url: &str, words: &[&str]) -> String {
        let (user, password) =
            url.split_once("://").unwrap().1.split_once('@').unwrap().0.split_once(':').unwrap();
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert", self.file("ca.pem").to_str().unwrap(), "-h", "localhost"])
            .args(["-p", &self.port.to_string(), "--user", user])
            .args(words)
            .env("REDISCLI_AUTH", password)
            .output()
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    pub fn admin_url(&self) -> String {
        format!("redis://admin:{}@127.0.0.1:{}", self.password, self.port)
    }
}

impl Drop for ExternalRedis {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        if alive(pid) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[test]
fn external_server_gets_the_same_users_and_keeps_what_is_not_ours() {
    let redis = ExternalRedis::start();
    let mut p = crate::harness::project_on(crate::harness::shared_server());
    for (path, text) in [
        (
            "services/alpha/Cargo.toml",
            "[package]\nname = \"alpha\"\nversion = \"0.1.0\"\n\n[package.metadata.xtask]\nredis = true\n",
        ),
        (
            "services/beta/Cargo.toml",
            "[package]\nname = \"beta\"\nversion = \"0.1.0\"\n\n[package.metadata.xtask]\nredis = true\n",
        ),
    ] {
        p.write(path, text);
    }
    let root = std::fs::read_to_string(p.path().join("Cargo.toml")).unwrap();
    p.write("Cargo.toml", &root.replace("members = []", "members = [\"services/*\"]"));
    let err = p.fails(&["setup"]);
    contains(&err, "XTASK_REDIS_URL");
    p.set("XTASK_REDIS_URL", &format!("redis://admin:wrong@127.0.0.1:{}", redis.port));
    let err = p.fails(&["setup"]);
    contains(
        &err,
        &format!(
            "the Redis server at redis://admin:***@127.0.0.1:{}/0 refused the login of user admin",
            redis.port
        ),
    );
    assert!(!err.contains("wrong"), "the password is not shown: {err}");
    p.set("XTASK_REDIS_URL", &redis.admin_url());
    let mut admin = connect(&redis.admin_url());
    run(&mut admin, &["SET", "someone:else", "kept"]).unwrap();
    // A user of the same name that this project did not make is neither taken over nor wiped.
    let taken = format!("{}_alpha", p.name);
    run(&mut admin, &["ACL", "SETUSER", &taken, "on", ">theirs", "~theirs:*", "+get"]).unwrap();
    let err = p.fails(&["setup"]);
    contains(&err, &format!("has a user {taken} that this project did not make"));
    contains(&p.ok_err(&["wipe"]).1, "has no Redis users");
    let theirs = format!("redis://{taken}:theirs@127.0.0.1:{}", redis.port);
    run(&mut connect(&theirs), &["GET", "theirs:x"]).unwrap();
    run(&mut admin, &["ACL", "DELUSER", &taken]).unwrap();
    p.ok(&["setup"]);
    let (alpha_url, alpha_prefix) = service_login(&p, "alpha");
    let mut alpha = connect(&alpha_url);
    run(&mut alpha, &["SET", &format!("{alpha_prefix}k"), "1"]).unwrap();
    refused(&mut alpha, &["GET", "someone:else"]);
    let mut beta = connect(&service_login(&p, "beta").0);
    refused(&mut beta, &["GET", &format!("{alpha_prefix}k")]);
    contains(&p.ok_err(&["setup"]).1, "nothing to do");
    p.ok(&["teardown"]);
    login_fails(&alpha_url);
    assert_eq!(get(&mut admin, "someone:else").as_deref(), Some("kept"));
    let left: Vec<String> = redis::cmd("ACL").arg("USERS").query(&mut admin).unwrap();
    assert_eq!(left, ["admin", "default"], "only the project's users went");
}

#[test]
fn external_server_over_tls_is_verified() {
    let redis = ExternalRedis::start_with(true);
    let mut p = crate::harness::project_on(crate::harness::shared_server());
    p.write(
        "services/alpha/Cargo.toml",
        "[package]\nname = \"alpha\"\nversion = \"0.1.0\"\n\n[package.metadata.xtask]\nredis = true\n",
    );
    let root = std::fs::read_to_string(p.path().join("Cargo.toml")).unwrap();
    p.write("Cargo.toml", &root.replace("members = []", "members = [\"services/*\"]"));
    let url = format!("rediss://admin:{}@localhost:{}", redis.password, redis.port);
    p.set("XTASK_REDIS_URL", &url);
    // A CA that did not sign the server's certificate: refused before the password is sent.
    p.set("XTASK_REDIS_CA", redis.file("other-ca.pem").to_str().unwrap());
    let err = p.fails(&["setup"]);
    contains(&err, &format!("TLS with Redis at localhost:{}", redis.port));
    contains(&err, "certificate");
    // Plain text to a TLS port is not answered as Redis.
    p.set("XTASK_REDIS_URL", &url.replace("rediss://", "redis://"));
    p.unset("XTASK_REDIS_CA");
    assert!(!p.run(&["setup"]).status.success());
    p.set("XTASK_REDIS_URL", &url);
    p.set("XTASK_REDIS_CA", redis.file("ca.pem").to_str().unwrap());
    p.ok(&["setup"]);
    let (alpha_url, prefix) = service_login(&p, "alpha");
    assert!(alpha_url.starts_with("rediss://"), "{alpha_url}");
    assert_eq!(env_value(&p, "REDIS_URL"), alpha_url);
    contains(&redis.cli(&alpha_url, &["SET", &format!("{prefix}k"), "1"]), "OK");
    contains(&redis.cli(&alpha_url, &["SET", "elsewhere", "1"]), "NOPERM");
    contains(&p.ok_err(&["setup"]).1, "nothing to do");
    p.ok(&["teardown"]);
    contains(&redis.cli(&alpha_url, &["PING"]), "WRONGPASS");
}

/// SIGKILL of wipe after it removed the user, while it deletes its keys: the record is left, so
/// the next wipe finds the branch again and finishes (no key left behind, no record without user).
#[test]
fn wipe_killed_while_deleting_keys_is_finished_by_the_next() {
    let p = redis_project("native");
    let user = format!("{}_alpha", p.name);
    let registry = format!("XTASK:{}:users", p.name);
    let mut keys = 200_000;
    // More keys each time the kill came too late (a loaded machine): the test is of a wipe
    // interrupted while it deletes them.
    let (mut admin, prefix) = loop {
        p.ok(&["setup"]);
        let (url, prefix) = service_login(&p, "alpha");
        let mut fill = redis::pipe();
        for n in 0..keys {
            fill.cmd("SET").arg(format!("{prefix}k{n}")).arg(n).ignore();
        }
        let () = fill.query(&mut connect(&url)).unwrap();
        let mut admin = connect(&admin_url(&p));
        let mut child = p.command(&["wipe"]).stderr(Stdio::null()).spawn().unwrap();
        let start = Instant::now();
        loop {
            let gone: redis::Value = redis::cmd("ACL").arg("GETUSER").arg(&user).query(&mut admin).unwrap();
            if gone == redis::Value::Nil {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "wipe never removed the user");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let left =
            redis::cmd("KEYS").arg(format!("{prefix}*")).query::<Vec<String>>(&mut admin).unwrap().len();
        if left > 0 {
            break (admin, prefix);
        }
        assert!(keys < 1_600_000, "with {keys} keys the kill still came after every key was gone");
        keys *= 2;
    };
    let recorded: bool = redis::cmd("HEXISTS").arg(&registry).arg(&user).query(&mut admin).unwrap();
    assert!(recorded, "the record outlives a wipe killed before the end");
    let (_, err) = p.ok_err(&["wipe"]);
    contains(&err, &format!("removed 0 Redis user(s) ({user}, {}_beta)", p.name));
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut admin).unwrap();
    assert!(keys.is_empty(), "{} keys left", keys.len());
    let recorded: bool = redis::cmd("HEXISTS").arg(&registry).arg(&user).query(&mut admin).unwrap();
    assert!(!recorded);
}

/// A Redis server this tool made goes with teardown even once Cargo.toml stopped asking for it:
/// it would otherwise outlive its data directory.
#[test]
fn teardown_removes_a_redis_server_no_longer_configured() {
    let mut p = redis_project("native");
    p.ok(&["setup"]);
    let dir = p.data_dir().join("redis");
    let pid: i32 = std::fs::read_to_string(dir.join("redis.pid")).unwrap().trim().parse().unwrap();
    p.set("XTASK_REDIS", "0");
    let (_, err) = p.ok_err(&["teardown"]);
    contains(&err, "removed the native Redis server and its data");
    assert!(!alive(pid), "redis-server {pid} outlived teardown");
    assert!(!dir.exists());
}
