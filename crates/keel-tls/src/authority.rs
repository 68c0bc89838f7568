//! The cluster's certificate authority, kept in one directory (`keel certs`).
//!
//! - `ca.pem` ([`BUNDLE_FILE`]): the trust bundle, every CA a process
//!   trusts; copy it to every host. During a rollover it holds the old CA
//!   and the new one.
//! - `ca-cert.pem` and `ca-key.pem`: the CA that signs now. The key stays
//!   with the operator; no host needs it.
//! - `node-<id>.pem`/`.key` and `client-<name>.pem`/`.key`: what
//!   [`issue`] writes.
//!
//! A rollover that keeps the cluster serving: [`roll_over`] makes a new
//! signing CA and adds it to the bundle; copy the bundle to every host
//! (each process reloads it), issue every node a certificate from the new
//! CA and copy those; then [`retire_old`] leaves only the new CA in the
//! bundle, to be copied once more. At every step each process trusts the
//! CA of every certificate in use.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use crate::files::certificates;
use crate::{member_name, TlsError, TlsFiles, CLIENT_DOMAIN};

pub use crate::files::BUNDLE_FILE;
/// The signing CA's certificate.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// The signing CA's private key (mode 0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// How long a CA is valid unless told otherwise.
pub const CA_VALIDITY_DEFAULT: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How long a node or client certificate is valid unless told otherwise.
pub const LEAF_VALIDITY_DEFAULT: Duration = Duration::from_secs(365 * 86_400);
/// How far before now a certificate's validity starts, so a host whose
/// clock is somewhat behind the CA's accepts a fresh certificate.
pub const BACKDATE: Duration = Duration::from_secs(3_600);
/// The pseudo-domain of gateway identities; never resolved.
pub const GATEWAY_DOMAIN: &str = "gateway.keel";

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    /// Not before this time.
    pub not_before: SystemTime,
    /// Not after this time.
    pub not_after: SystemTime,
}

impl Validity {
    /// From [`BACKDATE`] ago until `span` from now.
    pub fn from_now(span: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now - BACKDATE,
            not_after: now + span,
        }
    }
}

/// Whom a certificate is for.
#[derive(Clone, Debug)]
pub enum Subject {
    /// Member `id` of the cluster: its certificate serves its listener and
    /// identifies it to its peers.
    Node {
        /// The member id.
        id: u64,
    },
    /// A gateway by name: its certificate serves its clients.
    Gateway {
        /// The name, as a DNS label: letters, digits and `-`.
        name: String,
    },
    /// A client (an operator's tool, a shop's service) by name.
    Client {
        /// The name, as a DNS label: letters, digits and `-`.
        name: String,
    },
}

impl Subject {
    /// The file name (without extension) of this subject's certificate.
    pub fn file_stem(&self) -> String {
        match self {
            Subject::Node { id } => format!("node-{id}"),
            Subject::Gateway { name } => format!("gateway-{name}"),
            Subject::Client { name } => format!("client-{name}"),
        }
    }
}

/// What to issue.
#[derive(Clone, Debug)]
pub struct Request {
    /// Whom for.
    pub subject: Subject,
    /// Host names the holder is reached by (a node's listener).
    pub dns_names: Vec<String>,
    /// Addresses the holder is reached at.
    pub ips: Vec<IpAddr>,
    /// When it is valid.
    pub validity: Validity,
}

/// Creates a new CA in `dir` (made if missing), valid for `validity`.
/// Refuses a directory that already holds one: a second CA would orphan
/// every certificate the first signed.
pub fn create(dir: &Path, name: &str, validity: Validity) -> Result<PathBuf, TlsError> {
    if dir.join(CA_KEY_FILE).exists() || dir.join(BUNDLE_FILE).exists() {
        return Err(TlsError::Authority(format!(
            "{} already holds a CA; use `keel certs rotate-ca` to replace it",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::File {
        path: dir.to_owned(),
        source,
    })?;
    let (cert_pem, key_pem) = new_ca(name, validity)?;
    write(&dir.join(CA_KEY_FILE), key_pem.as_bytes(), true)?;
    write(&dir.join(CA_CERT_FILE), cert_pem.as_bytes(), false)?;
    write(&dir.join(BUNDLE_FILE), cert_pem.as_bytes(), false)?;
    Ok(dir.join(BUNDLE_FILE))
}

/// Issues a certificate for `req` signed by the CA in `dir`, written as
/// `<stem>.pem` and `<stem>.key` in `out`; returns the files a process
/// holding it is configured with.
pub fn issue(dir: &Path, req: &Request, out: &Path) -> Result<TlsFiles, TlsError> {
    let issuer = signing_ca(dir)?;
    let mut params = leaf_params(req)?;
    params.serial_number = Some(serial()?);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out).map_err(|source| TlsError::File {
        path: out.to_owned(),
        source,
    })?;
    let stem = req.subject.file_stem();
    let files = TlsFiles {
        ca: dir.join(BUNDLE_FILE),
        cert: out.join(format!("{stem}.pem")),
        key: out.join(format!("{stem}.key")),
    };
    // Key first: a reloading process that sees the new certificate before
    // its key fails that reload and keeps the old pair, then loads both at
    // the next look.
    write(&files.key, key.serialize_pem().as_bytes(), true)?;
    write(&files.cert, cert.pem().as_bytes(), false)?;
    Ok(files)
}

/// Starts a CA rollover: a new signing CA replaces the old one in `dir`,
/// and the bundle trusts both until [`retire_old`].
pub fn roll_over(dir: &Path, name: &str, validity: Validity) -> Result<(), TlsError> {
    // Both must be sound before anything changes.
    certificates(&dir.join(BUNDLE_FILE))?;
    signing_ca(dir)?;
    let old = std::fs::read_to_string(dir.join(BUNDLE_FILE)).map_err(|source| TlsError::File {
        path: dir.join(BUNDLE_FILE),
        source,
    })?;
    let (cert_pem, key_pem) = new_ca(name, validity)?;
    let mut bundle = cert_pem.clone();
    if !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(&old);
    // The bundle first: were the new CA to sign before every host trusts
    // it, its certificates would be refused.
    write(&dir.join(BUNDLE_FILE), bundle.as_bytes(), false)?;
    write(&dir.join(CA_KEY_FILE), key_pem.as_bytes(), true)?;
    write(&dir.join(CA_CERT_FILE), cert_pem.as_bytes(), false)?;
    Ok(())
}

/// Ends a rollover: the bundle trusts only the signing CA.
pub fn retire_old(dir: &Path) -> Result<(), TlsError> {
    let current = std::fs::read(dir.join(CA_CERT_FILE)).map_err(|source| TlsError::File {
        path: dir.join(CA_CERT_FILE),
        source,
    })?;
    write(&dir.join(BUNDLE_FILE), &current, false)
}

/// How many CA certificates the bundle in `dir` holds.
pub fn bundle_len(dir: &Path) -> Result<usize, TlsError> {
    Ok(certificates(&dir.join(BUNDLE_FILE))?.len())
}

fn new_ca(name: &str, validity: Validity) -> Result<(String, String), TlsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Keel cluster CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
    params.serial_number = Some(serial()?);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn leaf_params(req: &Request) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let (common_name, identity, usages) = match &req.subject {
        Subject::Node { id } => {
            if *id == 0 {
                return Err(TlsError::Name("a member id is at least 1".to_owned()));
            }
            (
                format!("keel node {id}"),
                member_name(*id),
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            )
        }
        Subject::Gateway { name } => {
            check_label(name)?;
            (
                format!("keel gateway {name}"),
                format!("{name}.{GATEWAY_DOMAIN}"),
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            )
        }
        Subject::Client { name } => {
            check_label(name)?;
            (
                name.clone(),
                format!("{name}.{CLIENT_DOMAIN}"),
                vec![ExtendedKeyUsagePurpose::ClientAuth],
            )
        }
    };
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let mut sans = vec![san_dns(&identity)?];
    for d in &req.dns_names {
        sans.push(san_dns(d)?);
    }
    sans.extend(req.ips.iter().copied().map(SanType::IpAddress));
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages;
    params.use_authority_key_identifier_extension = true;
    params.not_before = req.validity.not_before.into();
    params.not_after = req.validity.not_after.into();
    Ok(params)
}

/// A gateway's or client's name must be one DNS label.
fn check_label(name: &str) -> Result<(), TlsError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(TlsError::Name(format!(
            "name {name:?}: use 1 to 63 letters, digits and '-'"
        )))
    }
}

fn san_dns(name: &str) -> Result<SanType, TlsError> {
    let ia5 = name
        .to_owned()
        .try_into()
        .map_err(|e| TlsError::Name(format!("{name:?} is not a DNS name: {e}")))?;
    Ok(SanType::DnsName(ia5))
}

/// The CA that signs now, from `dir`.
fn signing_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, TlsError> {
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).map_err(|source| TlsError::File {
            path: dir.join(file),
            source,
        })
    };
    let (cert, key) = (read(CA_CERT_FILE)?, read(CA_KEY_FILE)?);
    let key = KeyPair::from_pem(&key)?;
    Ok(Issuer::from_ca_cert_pem(&cert, key)?)
}

/// A random positive 128-bit serial number, as RFC 5280 asks.
fn serial() -> Result<SerialNumber, TlsError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TlsError::Authority("no randomness for a serial number".to_owned()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed
/// over it), so a process reloading never reads half a file; a `secret`
/// file is readable by its owner only.
fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let err = |source| TlsError::File {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
