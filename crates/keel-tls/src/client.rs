//! The dialling side: the cluster's CA as the only roots, and the
//! certificate a node presents to its peers.

use std::path::PathBuf;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::files::{certificates, private_key, roots};
use crate::reload::Reloading;
use crate::{provider, TlsError, TlsFiles, ALPN_HTTP1};

/// What a process dials TLS with, reloaded when its files change. A server
/// is accepted only with a certificate that chains to the CA bundle and
/// names the host dialled (a DNS name or an IP address).
pub struct ClientTls {
    config: Reloading<ClientConfig>,
}

impl ClientTls {
    /// Trusts the CAs in `ca` and presents no certificate (a gateway, a
    /// shop's client).
    pub fn anonymous(ca: PathBuf) -> Result<Self, TlsError> {
        let paths = vec![ca.clone()];
        let config = Reloading::load("client", paths, move || build(&ca, None))?;
        Ok(Self { config })
    }

    /// Trusts the CAs in `files.ca` and presents `files.cert` (a node to its
    /// peers, or a client whose certificate stands for an identity).
    pub fn with_identity(files: TlsFiles) -> Result<Self, TlsError> {
        let paths = vec![files.ca.clone(), files.cert.clone(), files.key.clone()];
        let config = Reloading::load("client", paths, move || build(&files.ca, Some(&files)))?;
        Ok(Self { config })
    }

    /// Completes the TLS handshake on `stream` to the server reached as
    /// `host` (the host part of the address dialled). The caller bounds it
    /// with a timeout.
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is not a host name or address: {e}"),
            )
        })?;
        TlsConnector::from(self.config.current())
            .connect(name, stream)
            .await
    }
}

fn build(ca: &std::path::Path, identity: Option<&TlsFiles>) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?);
    let mut config = match identity {
        Some(f) => builder.with_client_auth_cert(certificates(&f.cert)?, private_key(&f.key)?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// The host part of `addr` (`host:port`, `[v6]:port` or a bare host), as a
/// TLS server name is checked against.
pub fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_is_the_address_without_its_port() {
        assert_eq!(host_of("127.0.0.1:7101"), "127.0.0.1");
        assert_eq!(host_of("db-1.shop.example:7101"), "db-1.shop.example");
        assert_eq!(host_of("[::1]:7101"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
