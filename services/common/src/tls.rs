//! Mutual TLS for services reached over TCP (rustls with ring, through tonic).
//!
//! One directory (`[tls] dir` in berth.toml, `BERTH_TLS_DIR`, default `/etc/berth/tls`)
//! holds the material `deploy/certs.sh` makes:
//!
//! - `ca.pem`: the CA every side trusts, and the only one;
//! - `<service>.pem`, `<service>-key.pem` (e.g. `engine.pem`): a service's server
//!   certificate, presented on its `[listen]` address;
//! - `client.pem`, `client-key.pem`: the identity of clients (the CLI, a service calling a
//!   `[remote]` service).
//!
//! A server requires a client certificate signed by the CA (no anonymous clients); a
//! client checks the server's certificate against the CA and the host name or IP address
//! it dialed.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};

use crate::{config::parse_tcp_url, Service};

/// The CA certificate's file name in the TLS directory.
pub const CA_FILE: &str = "ca.pem";

/// The name of the clients' certificate in the TLS directory (`client.pem`).
pub const CLIENT_NAME: &str = "client";

/// A peer that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client waits for a TCP connection to a remote service.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `<dir>/<name>.pem` and `<dir>/<name>-key.pem`.
pub fn cert_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    )
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

/// The TLS settings of `service`'s TCP listener: its certificate from `dir`, and client
/// certificates required, signed by `dir/ca.pem`.
pub fn server_config(dir: &Path, service: Service) -> anyhow::Result<ServerTlsConfig> {
    let (cert, key) = cert_paths(dir, service.name());
    let identity = Identity::from_pem(read(&cert)?, read(&key)?);
    let ca = Certificate::from_pem(read(&dir.join(CA_FILE))?);
    Ok(ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(ca)
        .client_auth_optional(false)
        .timeout(HANDSHAKE_TIMEOUT))
}

/// The files a client proves itself with and checks servers against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ClientFiles {
    /// `ca.pem`, `client.pem` and `client-key.pem` in `dir`.
    pub fn in_dir(dir: &Path) -> ClientFiles {
        let (cert, key) = cert_paths(dir, CLIENT_NAME);
        ClientFiles {
            ca: dir.join(CA_FILE),
            cert,
            key,
        }
    }

    /// The client TLS settings for a server known as `host` (a name or an IP address,
    /// which the server's certificate must hold).
    pub fn tls_config(&self, host: &str) -> anyhow::Result<ClientTlsConfig> {
        Ok(client_config(&self.ca, Some((&self.cert, &self.key)))?.domain_name(host))
    }
}

/// Client TLS settings that trust servers signed by the CA in `ca` and, with `identity`
/// (certificate, key), prove the client; all PEM files.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<ClientTlsConfig> {
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca)?))
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some((cert, key)) = identity {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(config)
}

/// A lazy channel to `url` (`tcp://host:port`) over mutual TLS with `files`. Fails at
/// once on a malformed URL or unreadable or invalid certificates; the connection itself is
/// made by the first call (and remade after the service restarts).
pub fn remote_channel(url: &str, files: &ClientFiles) -> anyhow::Result<Channel> {
    let (host, port) = parse_tcp_url(url).map_err(anyhow::Error::msg)?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let endpoint = Endpoint::from_shared(format!("https://{authority}"))
        .with_context(|| format!("invalid endpoint {url}"))?
        .tls_config(files.tls_config(&host)?)
        .with_context(|| format!("TLS settings for {url}"))?
        .connect_timeout(CONNECT_TIMEOUT);
    Ok(endpoint.connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_the_directory() {
        let files = ClientFiles::in_dir(Path::new("/etc/berth/tls"));
        assert_eq!(files.ca, Path::new("/etc/berth/tls/ca.pem"));
        assert_eq!(files.cert, Path::new("/etc/berth/tls/client.pem"));
        assert_eq!(files.key, Path::new("/etc/berth/tls/client-key.pem"));
        assert_eq!(
            cert_paths(Path::new("/d"), Service::ImageStore.name()),
            (
                PathBuf::from("/d/image-store.pem"),
                PathBuf::from("/d/image-store-key.pem")
            )
        );
    }

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = server_config(dir.path(), Service::Engine).unwrap_err();
        assert!(format!("{err:#}").contains("engine.pem"), "{err:#}");
        let err = ClientFiles::in_dir(dir.path())
            .tls_config("localhost")
            .unwrap_err();
        assert!(format!("{err:#}").contains("ca.pem"), "{err:#}");
    }
}
