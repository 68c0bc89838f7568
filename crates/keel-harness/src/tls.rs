//! A cluster's TLS material, made as an operator makes it with `keel
//! certs`: one CA under the cluster's directory, a certificate per node
//! naming its member id and address, one for the gateway.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_tls::authority::{self, Request, Subject, Validity};
use keel_tls::{ClientTls, TlsFiles};

use crate::HarnessError;

/// How long the harness's certificates are valid.
const VALIDITY: Duration = Duration::from_secs(30 * 86_400);

/// The CA of one harness cluster and the client every harness call uses.
pub struct ClusterTls {
    dir: PathBuf,
    client: Arc<ClientTls>,
}

impl ClusterTls {
    /// The CA in `dir`, created if it does not exist yet (a cluster
    /// restarted from the same directory keeps its CA).
    pub fn open(dir: &Path) -> Result<Self, HarnessError> {
        if !dir.join(authority::BUNDLE_FILE).exists() {
            authority::create(dir, "keel test cluster CA", Validity::from_now(VALIDITY))?;
        }
        let client = Arc::new(ClientTls::anonymous(dir.join(authority::BUNDLE_FILE))?);
        Ok(Self {
            dir: dir.to_owned(),
            client,
        })
    }

    /// The CA's directory (for `keel certs` and for tests that rotate).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA bundle every process of the cluster trusts.
    pub fn bundle(&self) -> PathBuf {
        self.dir.join(authority::BUNDLE_FILE)
    }

    /// The client every harness call dials with: the CA as its only root.
    pub fn client(&self) -> Arc<ClientTls> {
        self.client.clone()
    }

    /// Member `id`'s files, issued for `addr` (and loopback) if missing.
    pub fn node(&self, id: u64, addr: &str) -> Result<TlsFiles, HarnessError> {
        let files = TlsFiles::in_dir(&self.dir, &format!("node-{id}"));
        if files.cert.exists() {
            return Ok(files);
        }
        self.issue(Subject::Node { id }, addr)
    }

    /// A gateway's files, issued for `addr` if missing.
    pub fn gateway(&self, addr: &str) -> Result<TlsFiles, HarnessError> {
        let files = TlsFiles::in_dir(&self.dir, "gateway-harness");
        if files.cert.exists() {
            return Ok(files);
        }
        self.issue(
            Subject::Gateway {
                name: "harness".into(),
            },
            addr,
        )
    }

    /// Issues (or reissues) a certificate for `subject` reached at `addr`.
    pub fn issue(&self, subject: Subject, addr: &str) -> Result<TlsFiles, HarnessError> {
        let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])];
        if let Ok(ip) = keel_tls::host_of(addr).parse::<IpAddr>() {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let req = Request {
            subject,
            dns_names: vec!["localhost".into()],
            ips,
            validity: Validity::from_now(VALIDITY),
        };
        Ok(authority::issue(&self.dir, &req, &self.dir)?)
    }
}

/// The `keel node`/`keel gateway` flags that point at `files`.
pub fn flags(files: &TlsFiles) -> [std::ffi::OsString; 6] {
    [
        "--tls-ca".into(),
        files.ca.clone().into(),
        "--tls-cert".into(),
        files.cert.clone().into(),
        "--tls-key".into(),
        files.key.clone().into(),
    ]
}
