//! The member identity a node's certificate names.
//!
//! A node's certificate carries, beside the host names clients dial, the DNS
//! name `node-<id>.member.keel`. The CA signs it only into a node's
//! certificate (`keel certs node --id`), so a peer that completed the
//! handshake with a certificate naming member 2 holds member 2's key: a
//! node that holds a certificate for one member cannot speak for another.

use rustls_pki_types::{CertificateDer, ServerName};

/// The pseudo-domain of member identities; never resolved.
pub const MEMBER_DOMAIN: &str = "member.keel";

/// The DNS name a certificate for member `id` carries.
pub fn member_name(id: u64) -> String {
    format!("node-{id}.{MEMBER_DOMAIN}")
}

/// Whether `cert` (already verified against the cluster's CA by the
/// handshake) names member `id`.
pub fn presents_member(cert: &CertificateDer<'_>, id: u64) -> bool {
    let Ok(leaf) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(member_name(id)) else {
        return false;
    };
    leaf.verify_is_valid_for_subject_name(&name).is_ok()
}

/// The pseudo-domain of client identities (`keel certs client --name`);
/// never resolved.
pub const CLIENT_DOMAIN: &str = "client.keel";

/// The client name `cert` (already verified against the cluster's CA by
/// the handshake) carries as `<name>.client.keel`, if any: what a node
/// takes for the API key the certificate stands for.
pub fn client_name(cert: &CertificateDer<'_>) -> Option<String> {
    let leaf = webpki::EndEntityCert::try_from(cert).ok()?;
    let suffix = format!(".{CLIENT_DOMAIN}");
    let candidate = leaf
        .valid_dns_names()
        .find_map(|n| n.strip_suffix(suffix.as_str()).map(str::to_owned))
        .filter(|label| !label.is_empty() && !label.contains('.'))?;
    // The names iterator only finds the candidate; the certificate is
    // then checked for it the way a name must be checked.
    let name = ServerName::try_from(format!("{candidate}{suffix}")).ok()?;
    leaf.verify_is_valid_for_subject_name(&name).ok()?;
    Some(candidate)
}

/// Checks that the leaf certificate in the PEM file at `path` names member
/// `id`: a node refuses to start with another member's certificate, which
/// its peers would refuse anyway, call by call.
pub fn check_member_certificate(path: &std::path::Path, id: u64) -> Result<(), crate::TlsError> {
    let certs = crate::files::certificates(path)?;
    match certs.first() {
        Some(leaf) if presents_member(leaf, id) => Ok(()),
        _ => Err(crate::TlsError::Pem {
            path: path.to_owned(),
            what: format!(
                "the certificate does not name member {id} ({}): issue one with `keel certs node --id {id}`",
                member_name(id)
            ),
        }),
    }
}
