//! TLS for the connections this tool makes to a server it does not own, and for the client
//! programs it starts there, with libpq's meaning of `sslmode`, `sslrootcert`, `sslcert` and
//! `sslkey` (read from the URL, else from PGSSLMODE, PGSSLROOTCERT, PGSSLCERT and PGSSLKEY). The
//! servers this tool runs itself listen on loopback only and are reached without it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<SslMode> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => bail!(
                "sslmode={other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the server's certificate is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roots {
    /// `sslrootcert=system`: the system's trust store.
    System,
    File(PathBuf),
}

/// How connections to one server use TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    /// The CA certificates to check the server against; with `require`, their presence makes it
    /// `verify-ca`, as in libpq.
    pub roots: Option<Roots>,
    /// The client certificate and its key, for servers that ask for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The URL parameters this module reads; the rest go to the PostgreSQL client.
pub const PARAMETERS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl Tls {
    /// No TLS: the servers this tool runs on loopback.
    pub fn disabled() -> Tls {
        Tls { mode: SslMode::Disable, roots: None, client: None }
    }

    /// From a URL's `ssl*` parameters, else libpq's variables and default files (relative paths
    /// are taken from `base`). Without any, `prefer`, libpq's default.
    pub fn from_settings(
        given: &dyn Fn(&str) -> Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
        base: &Path,
    ) -> Result<Tls> {
        let setting =
            |key: &str, variable: &str| given(key).or_else(|| env(variable)).filter(|v| !v.is_empty());
        let mode = match setting("sslmode", "PGSSLMODE") {
            Some(text) => SslMode::parse(&text)?,
            None => SslMode::Prefer,
        };
        let default_file = |name: &str| home.map(|h| h.join(".postgresql").join(name)).filter(|p| p.exists());
        let path =
            |text: String| if Path::new(&text).is_absolute() { PathBuf::from(text) } else { base.join(text) };
        let roots = match setting("sslrootcert", "PGSSLROOTCERT") {
            Some(text) if text == "system" => Some(Roots::System),
            Some(text) => Some(Roots::File(path(text))),
            None => default_file("root.crt").map(Roots::File),
        };
        let cert = setting("sslcert", "PGSSLCERT").map(path).or_else(|| default_file("postgresql.crt"));
        let key = setting("sslkey", "PGSSLKEY").map(path).or_else(|| default_file("postgresql.key"));
        let client = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(cert), None) => {
                bail!("sslcert={} is given without its key: add sslkey=PATH (or PGSSLKEY)", cert.display())
            }
            (None, Some(_)) | (None, None) => None,
        };
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && roots.is_none() {
            bail!(
                "sslmode={} checks the server's certificate against a CA, and none is given: add \
                 sslrootcert=PATH to the URL (or PGSSLROOTCERT), put the CA in ~/.postgresql/root.crt, or \
                 use sslrootcert=system for the system's trust store",
                mode.name()
            );
        }
        Ok(Tls { mode, roots, client })
    }

    /// Whether connections must be encrypted (no plain-text fallback).
    pub fn required(&self) -> bool {
        matches!(self.mode, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }

    /// Whether the server's certificate is checked (and against which host name).
    pub fn verification(&self) -> &'static str {
        match (self.mode, &self.roots) {
            (SslMode::VerifyFull, _) => "certificate and host name verified",
            (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => "certificate verified, host name not",
            _ => "certificate not verified",
        }
    }

    /// The URL query that gives a client the same settings (for `.env` and db-endpoint); none for
    /// libpq's default (`prefer`) and for the servers this tool runs.
    pub fn url_query(&self) -> String {
        let plain = matches!(self.mode, SslMode::Disable | SslMode::Prefer);
        if plain && self.roots.is_none() && self.client.is_none() {
            return String::new();
        }
        let mut query = format!("?sslmode={}", self.mode.name());
        match &self.roots {
            Some(Roots::System) => query += "&sslrootcert=system",
            Some(Roots::File(path)) => query += &format!("&sslrootcert={}", encode(path)),
            None => {}
        }
        if let Some((cert, key)) = &self.client {
            query += &format!("&sslcert={}&sslkey={}", encode(cert), encode(key));
        }
        query
    }

    /// libpq's variables for a client program started against this server.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("PGSSLMODE", self.mode.name().to_owned())];
        match &self.roots {
            Some(Roots::System) => env.push(("PGSSLROOTCERT", "system".into())),
            Some(Roots::File(path)) => env.push(("PGSSLROOTCERT", path.display().to_string())),
            None => {}
        }
        if let Some((cert, key)) = &self.client {
            env.push(("PGSSLCERT", cert.display().to_string()));
            env.push(("PGSSLKEY", key.display().to_string()));
        }
        env
    }

    /// The rustls connector for this mode (none for `disable`).
    pub fn connector(&self) -> Result<Option<postgres_rustls::MakeTlsConnector>> {
        if self.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, &self.roots) {
            (SslMode::VerifyFull, Some(Roots::System)) => {
                Arc::new(rustls_platform_verifier::Verifier::new(provider.clone())?)
            }
            (SslMode::VerifyFull, Some(Roots::File(file))) => {
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(file)?), provider.clone())
                    .build()?
            }
            (SslMode::VerifyCa | SslMode::Require, Some(Roots::File(file))) => Arc::new(IgnoringName(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(file)?), provider.clone())
                    .build()?,
            )),
            (SslMode::VerifyCa | SslMode::Require, Some(Roots::System)) => {
                Arc::new(IgnoringName(Arc::new(rustls_platform_verifier::Verifier::new(provider.clone())?)))
            }
            _ => Arc::new(Unverified(provider.signature_verification_algorithms)),
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.client {
            Some((cert, key)) => {
                let chain = certificates(cert, "the client certificate", "sslcert")?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("read the client key {} (sslkey)", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("use the client certificate (sslcert, sslkey)")?
            }
            None => builder.with_no_client_auth(),
        };
        postgres_rustls::set_postgresql_alpn(&mut config);
        Ok(Some(postgres_rustls::MakeTlsConnector::new(tokio_rustls::TlsConnector::from(Arc::new(config)))))
    }
}

/// For `rediss://`: the server's certificate checked against `ca` (a PEM file), else against the
/// system's roots, and its name against the host's (verify-full: Redis clients' default).
pub fn verified_client(ca: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match ca {
        Some(file) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(file)?), provider.clone()).build()?
        }
        None => Arc::new(rustls_platform_verifier::Verifier::new(provider.clone())?),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn roots(file: &Path) -> Result<RootCertStore> {
    let certs = certificates(file, "the CA certificates in", "sslrootcert")?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        bail!("{} (sslrootcert) holds no usable CA certificate", file.display());
    }
    Ok(store)
}

/// The PEM certificates in `file` (`what` and `setting` name it in errors).
fn certificates(file: &Path, what: &str, setting: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("read {what} {} ({setting})", file.display()))
}

fn encode(path: &Path) -> String {
    let mut out = String::new();
    for byte in path.display().to_string().bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out += &format!("%{byte:02X}");
        }
    }
    out
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct IgnoringName(Arc<dyn ServerCertVerifier>);

impl ServerCertVerifier for IgnoringName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`, `allow` and `require` without a CA: encrypted, the certificate taken as it comes
/// (libpq's meaning); the handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// What a failed TLS connection means, with what to do, when its cause is a certificate or a
/// server without TLS; `None` for other failures.
pub fn explain(error: &(dyn std::error::Error + 'static), tls: &Tls, host: &str) -> Option<String> {
    let mut source = Some(error);
    let mut text = String::new();
    while let Some(e) = source {
        // An io::Error's source() skips the error it wraps: look inside it.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &dyn std::error::Error);
        for candidate in [Some(e), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(problem)) =
                candidate.downcast_ref::<rustls::Error>()
            {
                return Some(certificate_problem(problem, tls, host));
            }
        }
        text += &e.to_string();
        source = e.source();
    }
    if text.contains("server does not support TLS") {
        return Some(format!(
            "the server at {host} does not accept TLS, and sslmode={} asks for it: turn TLS on at the server \
             (ssl = on), or connect with sslmode=prefer or disable if plain text is acceptable there",
            tls.mode.name()
        ));
    }
    None
}

fn certificate_problem(problem: &CertificateError, tls: &Tls, host: &str) -> String {
    let mode = tls.mode.name();
    let roots = match &tls.roots {
        Some(Roots::File(file)) => file.display().to_string(),
        Some(Roots::System) => "the system's trust store".into(),
        None => "no CA".into(),
    };
    match problem {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "the certificate of {host} is not signed by a CA in {roots} (sslmode={mode}): give the CA that \
             signed the server's certificate with sslrootcert=PATH (or PGSSLROOTCERT); nothing was sent"
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
            "the certificate of {host} is not valid for the name {host} (sslmode={mode} checks it): connect \
             by a name the certificate lists, or use sslmode=verify-ca to check the CA only; nothing was sent"
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("the certificate of {host} has expired (sslmode={mode}): the server needs a new one")
        }
        other => format!("the certificate of {host} is refused ({other:?}, sslmode={mode}, CA in {roots})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(given: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Tls> {
        let given = |key: &str| given.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
        let env = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
        Tls::from_settings(&given, &env, None, Path::new("/ws"))
    }

    #[test]
    fn settings_follow_libpq() {
        assert_eq!(settings(&[], &[]).unwrap().mode, SslMode::Prefer);
        let tls = settings(&[("sslmode", "verify-full"), ("sslrootcert", "ca.pem")], &[]).unwrap();
        assert_eq!(tls.roots, Some(Roots::File("/ws/ca.pem".into())));
        assert_eq!(tls.url_query(), "?sslmode=verify-full&sslrootcert=/ws/ca.pem");
        let tls = settings(&[], &[("PGSSLMODE", "require"), ("PGSSLROOTCERT", "/etc/ca.pem")]).unwrap();
        assert_eq!((tls.mode, tls.verification()), (SslMode::Require, "certificate verified, host name not"));
        assert_eq!(
            settings(&[("sslmode", "disable")], &[("PGSSLMODE", "require")]).unwrap().mode,
            SslMode::Disable
        );
        let error = settings(&[("sslmode", "verify-ca")], &[]).unwrap_err();
        assert!(error.to_string().contains("sslrootcert=system"), "{error}");
        assert!(settings(&[("sslmode", "required")], &[]).is_err());
        assert!(settings(&[("sslcert", "c.pem")], &[]).unwrap_err().to_string().contains("without its key"));
        assert_eq!(Tls::disabled().url_query(), "");
        assert_eq!(settings(&[], &[]).unwrap().url_query(), "", "libpq's default needs no query");
    }
}
