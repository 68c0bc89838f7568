//! The TLS flags a node and a gateway take, defined once.

use std::path::PathBuf;

/// TLS files, or the explicit choice of plaintext outside loopback.
#[derive(clap::Args, Clone, Debug)]
pub struct TlsArgs {
    /// CA bundle the cluster's certificates chain to (PEM; `keel certs`
    /// makes it).
    #[arg(long, env = "KEEL_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// This process's certificate (PEM); a node's must name its member id.
    #[arg(long, env = "KEEL_TLS_CERT", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// This process's private key (PEM).
    #[arg(long, env = "KEEL_TLS_KEY", requires_all = ["tls_ca", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
    /// Serve plaintext outside loopback, on a network you trust: tokens and
    /// the cluster secret then cross it in clear.
    #[arg(long, env = "KEEL_INSECURE_PLAINTEXT", conflicts_with = "tls_ca")]
    pub insecure_plaintext: bool,
}

impl TlsArgs {
    /// The three files, when all were given.
    pub fn files(&self) -> Option<keel_tls::TlsFiles> {
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(keel_tls::TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }
}
