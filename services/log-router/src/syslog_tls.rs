//! TLS for the syslog driver (`tcp+tls://`, RFC 5425): Docker's `syslog-tls-ca-cert`,
//! `syslog-tls-cert`, `syslog-tls-key` and `syslog-tls-skip-verify`, on rustls with ring.
//! Without a CA file the peer is checked against the Mozilla roots (webpki-roots), where
//! Docker uses the host's store.
use std::{net::TcpStream, sync::Arc};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{ring, CryptoProvider},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned,
};

use crate::error::{Error, Result};

/// The files and switch Docker's TLS options name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub skip_verify: bool,
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

fn bad(key: &str, path: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("log opt '{key}' {path:?}: {e}"))
}

/// Builds the client configuration, reading and checking every file now so a bad one
/// fails `create` with its option named.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidArgument(format!("syslog TLS: {e}")))?;
    let builder = if files.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        match &files.ca_cert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| bad("syslog-tls-ca-cert", path, e))?;
                for cert in certs {
                    let cert = cert.map_err(|e| bad("syslog-tls-ca-cert", path, e))?;
                    roots
                        .add(cert)
                        .map_err(|e| bad("syslog-tls-ca-cert", path, e))?;
                }
                if roots.is_empty() {
                    return Err(bad("syslog-tls-ca-cert", path, "no certificate in file"));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad("syslog-tls-cert", cert, e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad("syslog-tls-cert", cert, e))?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| bad("syslog-tls-key", key, e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad("syslog-tls-cert", cert, e))?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(Error::InvalidArgument(
                "log opt 'syslog-tls-cert' needs 'syslog-tls-key'".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(Error::InvalidArgument(
                "log opt 'syslog-tls-key' needs 'syslog-tls-cert'".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}

/// Wraps a connected socket in TLS for `host` (a name or an IP address) and completes
/// the handshake, so a certificate problem shows as a dial error.
pub fn connect(
    config: &Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> std::io::Result<TlsStream> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let conn = ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// `syslog-tls-skip-verify=true`: any certificate is accepted (signatures on the
/// handshake are still checked, so the session keys are real).
#[derive(Debug)]
struct SkipVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
