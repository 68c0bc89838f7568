//! TLS for every Keel link, on rustls with the ring provider.
//!
//! - [`ServerTls`]: what a node or gateway listener serves with. A client
//!   certificate is asked for and, when one is presented, must chain to the
//!   cluster's CA; a node's internal RPC then requires one that names the
//!   member the caller claims to be ([`presents_member`]).
//! - [`ClientTls`]: what the gateway, the typed client and a node calling
//!   its peers connect with: the cluster's CA as the only roots and, for a
//!   node, its own certificate to present.
//! - [`authority`]: the cluster's certificate authority behind `keel certs`:
//!   create it, issue node and client certificates, roll it over.
//!
//! Both configurations are read from PEM files ([`TlsFiles`]) and read again
//! when a file changes (checked at most every [`RELOAD_CHECK_INTERVAL`], on
//! the next handshake), so certificates rotate without a restart. A reload
//! that fails keeps the configuration that worked and says why in the log:
//! a half-copied file never takes a listener down.
//!
//! A node's certificate names its member identity as the DNS name
//! [`member_name`] (`node-<id>.member.keel`), beside the host names and
//! addresses clients use to reach it.
#![deny(missing_docs)]

pub mod authority;
mod client;
mod files;
mod identity;
mod reload;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use client::{host_of, ClientTls};
pub use files::TlsFiles;
pub use identity::{
    check_member_certificate, client_name, member_name, presents_member, CLIENT_DOMAIN,
    MEMBER_DOMAIN,
};
pub use rustls_pki_types::CertificateDer;
pub use server::{PeerCert, ServerTls};
pub use tokio_rustls::{client::TlsStream as ClientStream, server::TlsStream as ServerStream};

/// Longest gap between a certificate file changing and the next handshake
/// using it: files are looked at (their size and modification time) at most
/// this often, on a handshake.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The protocol every Keel link speaks inside TLS, offered by ALPN.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file held nothing usable of what it should.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was missing or wrong.
        what: String,
    },
    /// rustls refused the certificates or key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA bundle could not make a client-certificate verifier.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A certificate could not be made or signed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A name or address given for a certificate is not one.
    #[error("{0}")]
    Name(String),
    /// The certificate authority's directory is not as expected.
    #[error("{0}")]
    Authority(String),
}

/// The one crypto provider every configuration here is built on.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
