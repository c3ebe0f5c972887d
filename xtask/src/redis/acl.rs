//! The services' Redis users: one per service and branch, confined to the keys (and pub/sub
//! channels) under its own prefix, with no command that reaches past it.
//!
//! A key pattern binds only commands that name keys, so the commands that list or touch every key
//! (KEYS, SCAN, RANDOMKEY, DBSIZE, FLUSHALL, FLUSHDB, SWAPDB, MOVE, SELECT, PUBSUB CHANNELS) are
//! taken away, with every administrative and dangerous one (CONFIG, ACL, DEBUG, MONITOR, SORT's
//! BY and GET patterns, MIGRATE, RESTORE, ...). Scripts are taken away too: functions and the
//! script cache are server-wide.
//!
//! A user is made by one ACL SETUSER inside MULTI with its record, so a run killed at any point
//! leaves the user whole or absent. The password reaches the server as its SHA-256 only.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::resp::{Command, Connection, Reply, command};

/// The admin of the servers this tool makes; the `default` user is off.
pub const ADMIN_USER: &str = "xtask";
pub const ACL_FILE: &str = "users.acl";

/// COPY goes too (its DB option writes into databases no prefix guards, where wipe never looks),
/// and client-side caching (CLIENT TRACKING's broadcast mode reports every key changed on the
/// server, whoever's).
const RULES: &str = "-@all +@read +@write +@keyspace +@string +@hash +@list +@set +@sortedset +@stream \
                     +@bitmap +@hyperloglog +@geo +@transaction +@connection +@pubsub -@dangerous -@admin \
                     -@scripting -keys -scan -randomkey -dbsize -select -move -copy -swapdb -flushdb -flushall \
                     -pubsub -client|tracking -client|caching -client|getredir";

/// The oldest Redis whose ACLs these rules and the users' reading back need (channel patterns,
/// subcommand rules, GETUSER's shape).
pub const MIN_MAJOR: u32 = 7;

pub fn initial_acl_file(admin_password: &str) -> String {
    format!(
        "user default off resetkeys resetchannels -@all\nuser {ADMIN_USER} on #{} ~* &* +@all\n",
        sha256_hex(admin_password)
    )
}

fn sha256_hex(text: &str) -> String {
    crate::naming::hex(&Sha256::digest(text.as_bytes()))
}

/// The hash of the project's user records: field = user, value = [`Record`] as JSON. Its name can
/// be no user's key: prefixes are lower-case, this starts with upper case.
pub fn registry(project: &str) -> String {
    format!("XTASK:{project}:users")
}

/// What the registry says of a user: whose it is, and the rules it was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub branch: String,
    pub service: String,
    /// On the external engine, the developer whose branch it is (`None`: a shared branch, or
    /// another engine); prune judges only the caller's own by the caller's git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developer: Option<String>,
    /// The hash of [`RULES`] it was made with: another version of this tool remakes it.
    pub rules: String,
    /// The server's reading of the rules, to tell a hand-edited user.
    #[serde(default)]
    pub commands: String,
}

fn rules_hash() -> String {
    sha256_hex(RULES)[..12].to_owned()
}

/// One service's user on one branch.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// `<name>:`: every key and channel of the user starts with it.
    pub prefix: String,
    pub branch: String,
    pub service: String,
    pub developer: Option<String>,
}

/// The commands that read what the server has of `users`, after a login: one round trip with it.
pub fn survey_commands<'a>(project: &str, users: impl IntoIterator<Item = &'a User>) -> Vec<Command> {
    let registry = registry(project);
    users
        .into_iter()
        .flat_map(|u| [command(&["ACL", "GETUSER", &u.name]), command(&["HGET", &registry, &u.name])])
        .collect()
}

/// Whether the server's user (its GETUSER and registry replies) is exactly what `user` with
/// `password` should be.
pub fn is_current(user: &User, password: &str, getuser: &Reply, record: &Reply) -> bool {
    let Some(record) = record.text().and_then(|t| serde_json::from_str::<Record>(&t).ok()) else {
        return false;
    };
    let field = |name: &str| field(getuser, name);
    let texts = |reply: Option<&Reply>| -> Vec<String> {
        reply.map(|r| r.items().iter().filter_map(Reply::text).collect()).unwrap_or_default()
    };
    let text = |reply: Option<&Reply>| reply.and_then(Reply::text).unwrap_or_default();
    let pattern = format!("{}*", user.prefix);
    texts(field("flags")).contains(&"on".to_owned())
        && texts(field("passwords")) == [sha256_hex(password)]
        && text(field("keys")) == format!("~{pattern}")
        && text(field("channels")) == format!("&{pattern}")
        && same_rules(&text(field("commands")), &record.commands)
        // A selector added by hand (`(~* +@all)`) widens a user without touching the rest.
        && field("selectors").is_some_and(|s| s.items().is_empty())
        && record.rules == rules_hash()
        && record.branch == user.branch
        && !record.commands.is_empty()
}

/// A field of ACL GETUSER's reply (name, value, name, value, ...).
fn field<'a>(getuser: &'a Reply, name: &str) -> Option<&'a Reply> {
    getuser.items().chunks_exact(2).find(|pair| pair[0].text().as_deref() == Some(name)).map(|pair| &pair[1])
}

/// Refuses a server older than [`MIN_MAJOR`] (asked once users must be made).
pub fn require_version(connection: &mut Connection) -> Result<()> {
    let info = connection.call(&["INFO", "server"])?.text().unwrap_or_default();
    let version =
        info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_owned();
    let major = version.split('.').next().and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|m| m < MIN_MAJOR) {
        bail!(
            "the Redis server is version {version}; per-service users confined to their keys need Redis {MIN_MAJOR} \
             or newer: upgrade it"
        );
    }
    Ok(())
}

/// The server lists a user's single commands in its command table's order, which another start of
/// the server may change: the same rules are the same words.
fn same_rules(a: &str, b: &str) -> bool {
    fn words(text: &str) -> Vec<&str> {
        let mut words: Vec<&str> = text.split_whitespace().collect();
        words.sort_unstable();
        words
    }
    words(a) == words(b)
}

/// Makes (or remakes, `existed`) the user, atomically with its record.
pub fn make(
    connection: &mut Connection,
    project: &str,
    user: &User,
    password: &str,
    existed: bool,
) -> Result<()> {
    if !user.prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_:".contains(&b)) {
        bail!("internal: the Redis prefix {:?} would need escaping in a pattern", user.prefix);
    }
    let pattern = format!("{}*", user.prefix);
    let mut setuser: Vec<String> = ["ACL", "SETUSER", &user.name, "reset", "on"].map(String::from).to_vec();
    setuser.push(format!("#{}", sha256_hex(password)));
    setuser.push(format!("~{pattern}"));
    setuser.push("resetchannels".into());
    setuser.push(format!("&{pattern}"));
    setuser.extend(RULES.split_whitespace().map(String::from));
    let mut record = Record {
        branch: user.branch.clone(),
        service: user.service.clone(),
        developer: user.developer.clone(),
        rules: rules_hash(),
        commands: String::new(),
    };
    let registry = registry(project);
    let replies = connection.pipeline(&[
        command(&["MULTI"]),
        setuser,
        command(&["HSET", &registry, &user.name, &serde_json::to_string(&record)?]),
        command(&["EXEC"]),
        command(&["ACL", "GETUSER", &user.name]),
    ])?;
    // Inside MULTI a rule the server refuses shows only in EXEC's reply, and the record is written
    // all the same (no rollback): it goes again.
    let refused = replies[..4].iter().chain(replies[3].items()).find_map(|r| match r {
        Reply::Error(message) => Some(message.clone()),
        _ => None,
    });
    if let Some(message) =
        refused.or_else(|| replies[3].is_nil().then(|| "the transaction was aborted".into()))
    {
        // A user that stays as it was keeps its record (marked not current: its `commands` are
        // empty), so the next setup remakes it and wipe still finds it; a new one has none.
        if !existed {
            let _ = connection.call(&["HDEL", &registry, &user.name]);
        }
        bail!("make the Redis user {}: {message}", user.name);
    }
    record.commands = field(&replies[4], "commands").and_then(Reply::text).unwrap_or_default();
    connection.call(&["HSET", &registry, &user.name, &serde_json::to_string(&record)?])?;
    Ok(())
}

/// Every user of the project the registry knows, with its record.
pub fn recorded(connection: &mut Connection, project: &str) -> Result<Vec<(String, Record)>> {
    let reply = connection.call(&["HGETALL", &registry(project)])?;
    let items = reply.items();
    Ok(items
        .chunks_exact(2)
        .filter_map(|pair| {
            let record = serde_json::from_str(&pair.get(1)?.text()?).ok()?;
            Some((pair[0].text()?, record))
        })
        .collect())
}

/// Removes the users (their connections are closed) and saves that, then their keys, then their
/// records: a run killed half-way leaves records that the next wipe or prune finishes, never a
/// user without one. Returns the users that existed and the keys deleted.
pub fn remove(connection: &mut Connection, project: &str, users: &[String]) -> Result<(u64, u64)> {
    if users.is_empty() {
        return Ok((0, 0));
    }
    let mut deluser = command(&["ACL", "DELUSER"]);
    deluser.extend(users.iter().cloned());
    let removed = connection.call(&deluser)?.int().unwrap_or(0) as u64;
    save(connection)?;
    let mut deleted = 0;
    for user in users {
        deleted += delete_keys(connection, &format!("{user}:"))?;
    }
    let mut hdel = command(&["HDEL", &registry(project)]);
    hdel.extend(users.iter().cloned());
    connection.call(&hdel)?;
    Ok((removed, deleted))
}

fn delete_keys(connection: &mut Connection, prefix: &str) -> Result<u64> {
    let mut deleted = 0;
    scan(connection, prefix, |connection, keys| {
        let mut unlink = command(&["UNLINK"]);
        unlink.extend(keys.iter().cloned());
        deleted += connection.call(&unlink)?.int().unwrap_or(0) as u64;
        Ok(())
    })?;
    Ok(deleted)
}

/// The keys and memory of every user of the project, by user (a key's user is what comes before
/// its first `:`), in one pass.
pub fn usage_by_user(
    connection: &mut Connection,
    project: &str,
) -> Result<std::collections::HashMap<String, (u64, u64)>> {
    let mut by_user: std::collections::HashMap<String, (u64, u64)> = Default::default();
    scan(connection, project, |connection, batch| {
        let commands: Vec<Command> = batch.iter().map(|k| command(&["MEMORY", "USAGE", k])).collect();
        for (key, reply) in batch.iter().zip(connection.pipeline(&commands)?) {
            let Some((user, _)) = key.split_once(':') else { continue };
            let entry = by_user.entry(user.to_owned()).or_default();
            entry.0 += 1;
            entry.1 += reply.int().unwrap_or(0).max(0) as u64;
        }
        Ok(())
    })?;
    Ok(by_user)
}

/// Calls `each` with every batch of keys under `prefix` (as the admin: SCAN MATCH).
fn scan(
    connection: &mut Connection,
    prefix: &str,
    mut each: impl FnMut(&mut Connection, &[String]) -> Result<()>,
) -> Result<()> {
    let pattern = format!("{prefix}*");
    let mut cursor = "0".to_owned();
    loop {
        let reply = connection.call(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"])?;
        let [next, keys] = reply.items() else { bail!("SCAN returned a malformed reply") };
        let keys: Vec<String> = keys.items().iter().filter_map(Reply::text).collect();
        if !keys.is_empty() {
            each(connection, &keys)?;
        }
        cursor = next.text().unwrap_or_default();
        if cursor == "0" {
            return Ok(());
        }
    }
}

/// ACL SAVE where the server keeps an ACL file; a managed server without one keeps its users
/// its own way (not an error).
pub fn save(connection: &mut Connection) -> Result<()> {
    match connection.pipeline(&[command(&["ACL", "SAVE"])])?.remove(0) {
        Reply::Error(message) if message.contains("not configured to use an ACL file") => Ok(()),
        Reply::Error(message) => bail!("save the Redis users (ACL SAVE): {message}"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_take_away_every_command_that_reaches_past_a_prefix() {
        for taken in
            ["-@dangerous", "-@admin", "-@scripting", "-keys", "-scan", "-flushall", "-flushdb", "-select"]
        {
            assert!(RULES.split_whitespace().any(|r| r == taken), "{taken}");
        }
        assert!(RULES.starts_with("-@all "));
        let file = initial_acl_file("secret");
        assert!(!file.contains("secret") && file.contains(&sha256_hex("secret")));
        assert!(file.starts_with("user default off"));
    }
}
