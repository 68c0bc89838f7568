//! The listener side: a node's or gateway's certificate, and client
//! certificates checked against the cluster's CA.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::files::{certificates, private_key, roots};
use crate::reload::Reloading;
use crate::{provider, TlsError, TlsFiles, ALPN_HTTP1};

/// What a listener serves TLS with, reloaded when its files change.
///
/// A client may connect without a certificate (a shop's clients hold
/// tokens, not certificates); one that presents a certificate must chain it
/// to a CA in the bundle, or the handshake fails. What a certificate
/// entitles its holder to is decided above TLS, from [`PeerCert`].
pub struct ServerTls {
    config: Reloading<ServerConfig>,
}

impl ServerTls {
    /// Reads `files`; fails when any is missing or unusable.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let paths = vec![files.ca.clone(), files.cert.clone(), files.key.clone()];
        let config = Reloading::load("server", paths, move || build(&files))?;
        Ok(Self { config })
    }

    /// Completes the TLS handshake of an accepted connection with the
    /// configuration of the moment. The caller bounds it with a timeout.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        TlsAcceptor::from(self.config.current())
            .accept(stream)
            .await
    }
}

/// The certificate a client presented (verified against the CA bundle by
/// the handshake), if any: what a connection's requests carry so that a
/// handler can ask whom it speaks to.
#[derive(Clone, Debug)]
pub struct PeerCert(pub Arc<CertificateDer<'static>>);

impl PeerCert {
    /// The leaf certificate the client of `stream` presented, if any.
    pub fn of(stream: &TlsStream<TcpStream>) -> Option<Self> {
        let (_, session) = stream.get_ref();
        let leaf = session.peer_certificates()?.first()?;
        Some(Self(Arc::new(leaf.clone().into_owned())))
    }
}

fn build(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let roots = Arc::new(roots(&files.ca)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(&files.cert)?, private_key(&files.key)?)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}
