//! TLS to PostgreSQL: turns DB_URL's `sslmode` and `sslrootcert` into a rustls connector for the
//! `postgres` crate.
//!
//! This module owns the one decision that matters for security here, *what is checked about the
//! server's certificate*, so that it is made in one place, the way libpq makes it:
//!
//! | sslmode       | TLS                              | certificate                                   |
//! |---------------|----------------------------------|-----------------------------------------------|
//! | `disable`     | never                            | –                                             |
//! | `prefer`      | if the server offers it          | not checked (chain checked if `sslrootcert`)  |
//! | `require`     | always                           | not checked (chain checked if `sslrootcert`)  |
//! | `verify-ca`   | always                           | chain up to the root certificates             |
//! | `verify-full` | always                           | chain, and the certificate names the host     |
//!
//! The root certificates are `sslrootcert` (a PEM file), else Mozilla's (the `webpki-roots`
//! crate, compiled in, so a scratch container needs no CA bundle). A named root file that cannot
//! be read is a configuration error in every mode but `disable`: as with libpq, giving
//! `sslrootcert` makes `prefer` and `require` check the chain too, and silently not checking it
//! is not an option. Even when the certificate is not checked, the handshake signatures are, so
//! the connection is at least encrypted to whoever holds the certificate's key.
//!
//! rustls runs on the `ring` provider, chosen explicitly, so `aws-lc-rs` (which needs cmake and a
//! C toolchain) is never built. The connection offers the ALPN protocol `postgresql`, which
//! PostgreSQL 17 expects with `sslnegotiation=direct`.

use crate::config::{Database, TlsMode};
use crate::error::Error;
use postgres::tls::MakeTlsConnect;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The `sslrootcert` value that means "the default root certificates" (libpq 16's name).
const SYSTEM_ROOTS: &str = "system";

/// The TLS connector for [`postgres::Config::connect`], built from a [`Database`].
#[derive(Clone)]
pub struct MakeTls {
    inner: MakeRustlsConnect,
}

impl std::fmt::Debug for MakeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeTls")
    }
}

impl MakeTls {
    /// The connector for `db`'s `sslmode` and `sslrootcert`. The error (a configuration error
    /// naming DB_URL and the file) is for a root certificate file that cannot be used.
    ///
    /// For `disable` this builds the `prefer` connector; the `postgres` crate never uses it then.
    pub fn new(db: &Database) -> Result<MakeTls, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = match (db.tls(), root_store(db)?) {
            (TlsMode::Disable | TlsMode::Prefer | TlsMode::Require, roots) => {
                Arc::new(WithoutHostName {
                    roots: roots.map(Arc::new),
                    algorithms,
                })
            }
            (TlsMode::VerifyCa, roots) => Arc::new(WithoutHostName {
                roots: Some(Arc::new(roots.unwrap_or_else(default_roots))),
                algorithms,
            }),
            (TlsMode::VerifyFull, roots) => {
                let roots = Arc::new(roots.unwrap_or_else(default_roots));
                WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                    .build()
                    .map_err(|e| {
                        Error::config(format!(
                            "DB_URL ({}) sslmode=verify-full: cannot use the root certificates: {e}",
                            db.masked_url()
                        ))
                    })?
            }
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Bug(format!("rustls with ring has no TLS version: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeTls {
            inner: MakeRustlsConnect::new(config),
        })
    }
}

/// `sslmode=…` and where the root certificates come from, for messages.
pub fn describe(db: &Database) -> String {
    let mode = match db.tls() {
        TlsMode::Disable => "disable",
        TlsMode::Prefer => "prefer",
        TlsMode::Require => "require",
        TlsMode::VerifyCa => "verify-ca",
        TlsMode::VerifyFull => "verify-full",
    };
    match (db.tls(), db.root_cert()) {
        (TlsMode::Disable, _) => format!("sslmode={mode}"),
        (_, Some(file)) => format!("sslmode={mode}, sslrootcert={}", file.display()),
        (TlsMode::VerifyCa | TlsMode::VerifyFull, None) => {
            format!("sslmode={mode}, Mozilla's root certificates (no sslrootcert)")
        }
        (TlsMode::Prefer | TlsMode::Require, None) => format!("sslmode={mode}"),
    }
}

impl<S> MakeTlsConnect<S> for MakeTls
where
    MakeRustlsConnect: MakeTlsConnect<S>,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        // A Unix socket has no host name (the postgres crate passes ""). PostgreSQL never offers
        // TLS there and the postgres crate refuses a handshake without a host name, so the name is
        // never used; it only must parse, or `prefer` could not connect over a socket at all.
        let hostname = if hostname.is_empty() {
            "localhost"
        } else {
            hostname
        };
        self.inner.make_tls_connect(hostname)
    }
}

/// The certificates of `sslrootcert`, `None` when it is not set (or is `system`) or TLS is off.
fn root_store(db: &Database) -> Result<Option<RootCertStore>, Error> {
    let Some(file) = db.root_cert() else {
        return Ok(None);
    };
    if db.tls() == TlsMode::Disable || file == Path::new(SYSTEM_ROOTS) {
        return Ok(None);
    }
    let bad = |problem: String| {
        Error::config(format!(
            "DB_URL ({}) sslrootcert={}: {problem}",
            db.masked_url(),
            file.display()
        ))
    };
    let pem = std::fs::read(file).map_err(|e| bad(format!("cannot read the file: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("is not a PEM file of certificates: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("holds a certificate that cannot be a root: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(
            "holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(Some(roots))
}

fn default_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// Every mode but `verify-full`: the host name is not compared. With root certificates
/// (`verify-ca`, or `prefer`/`require` with `sslrootcert`) the chain must lead to one of them and
/// be valid now (rustls' own chain check, the first half of what `WebPkiServerVerifier` does, so no
/// error of the second half has to be told apart). Without (`prefer`/`require` alone) any
/// certificate is accepted, as libpq does. Either way the handshake must be signed with the
/// certificate's key.
#[derive(Debug)]
struct WithoutHostName {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for WithoutHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Sources};
    use std::collections::HashMap;

    fn database(db_url: &str) -> Database {
        let env: HashMap<String, String> = [
            ("DB_URL", db_url),
            ("APPID", "app"),
            ("AppSecret", "secret"),
            ("ACCOUNT_ID", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sources = Sources {
            env,
            ..Sources::default()
        };
        Config::from_sources(&sources).unwrap().database().clone()
    }

    fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "douyin-order-sync-tls-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn a_missing_root_certificate_file_is_a_configuration_error_naming_db_url_and_the_file() {
        for mode in ["verify-ca", "verify-full", "require", "prefer"] {
            let db = database(&format!(
                "postgres://u:hunter2@db:5432/x?sslmode={mode}&sslrootcert=/nonexistent/ca.pem"
            ));
            let err = MakeTls::new(&db).unwrap_err();
            let text = err.to_string();
            assert_eq!(err.exit_code(), 78, "{text}");
            assert!(
                text.contains("DB_URL (postgres://u:***@db:5432/x"),
                "{text}"
            );
            assert!(text.contains("/nonexistent/ca.pem"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn sslmode_disable_never_reads_the_root_certificate_file() {
        let db = database("postgres://u@db/x?sslmode=disable&sslrootcert=/nonexistent/ca.pem");
        assert!(MakeTls::new(&db).is_ok());
        assert_eq!(describe(&db), "sslmode=disable");
    }

    #[test]
    fn a_root_certificate_file_without_certificates_is_a_configuration_error() {
        let file = temp_file("empty.pem", "not a certificate\n");
        let db = database(&format!(
            "postgres://u@db/x?sslmode=verify-full&sslrootcert={}",
            file.display()
        ));
        let text = MakeTls::new(&db).unwrap_err().to_string();
        std::fs::remove_file(&file).unwrap();
        assert!(text.contains("holds no certificate"), "{text}");
    }

    #[test]
    fn a_pem_certificate_that_is_not_der_is_a_configuration_error() {
        let file = temp_file(
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        );
        let db = database(&format!(
            "postgres://u@db/x?sslmode=verify-ca&sslrootcert={}",
            file.display()
        ));
        let err = MakeTls::new(&db).unwrap_err();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(err.exit_code(), 78, "{err}");
        assert!(err.to_string().contains("cannot be a root"), "{err}");
    }

    #[test]
    fn verify_modes_without_sslrootcert_use_the_compiled_in_roots() {
        for mode in ["verify-ca", "verify-full"] {
            let db = database(&format!("postgres://u@db/x?sslmode={mode}"));
            assert!(MakeTls::new(&db).is_ok());
            assert!(describe(&db).contains("Mozilla's root certificates"));
        }
        let db = database("postgres://u@db/x?sslmode=verify-full&sslrootcert=system");
        assert!(MakeTls::new(&db).is_ok());
        assert!(!default_roots().is_empty());
    }

    #[test]
    fn a_unix_socket_host_still_gets_a_connector_so_prefer_can_fall_back_to_plain() {
        let db = database("postgres://u@db/x?sslmode=prefer");
        let mut tls = MakeTls::new(&db).unwrap();
        assert!(MakeTlsConnect::<postgres::Socket>::make_tls_connect(&mut tls, "").is_ok());
        assert!(
            MakeTlsConnect::<postgres::Socket>::make_tls_connect(&mut tls, "127.0.0.1").is_ok()
        );
    }

    #[test]
    fn without_a_root_certificate_any_certificate_passes_but_signatures_are_still_checked() {
        let verifier = WithoutHostName {
            roots: None,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        };
        let junk = CertificateDer::from(vec![1, 2, 3]);
        let name = ServerName::try_from("db").unwrap();
        assert!(verifier
            .verify_server_cert(&junk, &[], &name, &[], UnixTime::now())
            .is_ok());
        assert!(!verifier.supported_verify_schemes().is_empty());
    }

    #[test]
    fn the_chain_check_rejects_what_is_not_a_certificate() {
        let verifier = WithoutHostName {
            roots: Some(Arc::new(default_roots())),
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        };
        let junk = CertificateDer::from(vec![1, 2, 3]);
        let name = ServerName::try_from("db").unwrap();
        assert!(verifier
            .verify_server_cert(&junk, &[], &name, &[], UnixTime::now())
            .is_err());
    }

    #[test]
    fn the_description_names_the_mode_and_the_root_certificate_file() {
        let db = database("postgres://u@db/x?sslmode=verify-full&sslrootcert=/etc/ca.pem");
        assert_eq!(
            describe(&db),
            "sslmode=verify-full, sslrootcert=/etc/ca.pem"
        );
        assert_eq!(describe(&database("postgres://u@db/x")), "sslmode=prefer");
    }
}
