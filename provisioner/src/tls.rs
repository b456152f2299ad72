//! The public API's certificate, both sides of it.
//!
//! - What a certificate must be to serve the API name ([`identity_problem`]): PEM, a
//!   certificate chain whose leaf covers the name (webpki's RFC 6125 matching), in its
//!   validity period, and a private key that matches the leaf. `regions.toml`'s `[tls]`
//!   files are checked with it before any API call.
//! - On a local cloud without `[tls]`, a CA and a certificate for the API name that
//!   provision makes itself ([`generate`]).
//! - How provision's own calls to the public API verify it ([`api_client`]): HTTPS to one
//!   gateway's address, the certificate checked for the API name against the given CA (or the
//!   public roots).
//!
//! Pure but for the clock and the random keys; no file or network IO.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The generated identity's files under `.provision/<project>/secrets/` (vault items that a
/// newer local copy replaces, as it is remade for a new API name or before it expires).
pub const CA_PEM: &str = "tls_ca.pem";
pub const CHAIN_PEM: &str = "tls_chain.pem";
pub const KEY_PEM: &str = "tls_key.pem";
pub const GENERATED_FILES: [&str; 3] = [CA_PEM, CHAIN_PEM, KEY_PEM];

/// A generated certificate is valid this long; it is remade when less than
/// [`RENEW_BEFORE_DAYS`] are left.
pub const GENERATED_VALID_DAYS: u64 = 397;
pub const RENEW_BEFORE_DAYS: u64 = 30;

/// Why `chain_pem` and `key_pem` cannot serve HTTPS for `name` at `now`, if they cannot.
pub fn identity_problem(chain_pem: &[u8], key_pem: &[u8], name: &str, now: SystemTime) -> Option<String> {
    let chain = match CertificateDer::pem_slice_iter(chain_pem).collect::<Result<Vec<_>, _>>() {
        Ok(c) if c.is_empty() => return Some("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()),
        Ok(c) => c,
        Err(e) => return Some(format!("is not a PEM certificate chain: {e}")),
    };
    let leaf = &chain[0];
    if let Some(p) = validity_problem(leaf, now) {
        return Some(p);
    }
    if let Some(p) = name_problem(leaf, name) {
        return Some(p);
    }
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(k) => k,
        Err(e) => return Some(format!("the key file holds no PEM private key: {e}")),
    };
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider) {
        Ok(_) => None,
        Err(rustls::Error::InconsistentKeys(_)) => Some("the private key is not the certificate's (their public keys differ)".into()),
        Err(e) => Some(format!("the private key cannot sign: {e}")),
    }
}

/// Whether the leaf covers `name`; when not, which names it does cover.
fn name_problem(leaf: &CertificateDer<'_>, name: &str) -> Option<String> {
    let cert = match webpki::EndEntityCert::try_from(leaf) {
        Ok(c) => c,
        Err(e) => return Some(format!("the first certificate cannot be read: {e:?}")),
    };
    let server = match ServerName::try_from(name) {
        Ok(s) => s,
        Err(e) => return Some(format!("{name} is not a DNS name: {e}")),
    };
    if cert.verify_is_valid_for_subject_name(&server).is_ok() {
        return None;
    }
    let names = dns_names(leaf);
    let listed = if names.is_empty() { "no DNS name".to_string() } else { names.join(", ") };
    Some(format!("does not cover {name}: the certificate names {listed}"))
}

/// The leaf's subjectAltName DNS entries.
fn dns_names(leaf: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else { return vec![] };
    let Ok(Some(san)) = cert.subject_alternative_name() else { return vec![] };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

fn validity_problem(leaf: &CertificateDer<'_>, now: SystemTime) -> Option<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return Some("the first certificate is not X.509".into());
    };
    let now_s = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let v = cert.validity();
    if now_s < v.not_before.timestamp() {
        return Some(format!("is not valid before {}", v.not_before));
    }
    if now_s > v.not_after.timestamp() {
        return Some(format!("expired on {}", v.not_after));
    }
    None
}

/// Seconds the leaf of `chain_pem` stays valid after `now` (None: unreadable).
pub fn valid_for_s(chain_pem: &[u8], now: SystemTime) -> Option<i64> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let now_s = now.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(cert.validity().not_after.timestamp() - now_s)
}

/// A generated identity: the CA that clients trust, and the gateways' chain and key.
pub struct Generated {
    pub ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot make the local cloud's certificate for {name}: {message}")]
pub struct GenerateError {
    pub name: String,
    pub message: String,
}

/// A fresh CA (`provision <project> local CA`) and a certificate for `name` signed by it
/// (ECDSA P-256). The CA's key is not kept: a new name or an expiry makes both anew.
pub fn generate(project: &str, name: &str) -> Result<Generated, GenerateError> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    let err = |e: rcgen::Error| GenerateError { name: name.to_string(), message: e.to_string() };
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(GENERATED_VALID_DAYS as i64);

    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, format!("provision {project} local CA"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (ca.not_before, ca.not_after) = (now - time::Duration::hours(1), until);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(err)?).map_err(err)?;

    let mut leaf = CertificateParams::new(vec![name.to_string()]).map_err(err)?;
    leaf.distinguished_name.push(DnType::CommonName, name);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    (leaf.not_before, leaf.not_after) = (now - time::Duration::hours(1), until);
    let key = KeyPair::generate().map_err(err)?;
    let cert = leaf.signed_by(&key, &ca).map_err(err)?;
    Ok(Generated { ca_pem: ca.pem(), chain_pem: cert.pem() + &ca.pem(), key_pem: key.serialize_pem() })
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the API's CA certificate is not PEM: {0}")]
    Ca(String),
    #[error("cannot build the HTTPS client: {0}")]
    Build(String),
}

/// `https://<name>:<port><path>`: a URL of the public API.
pub fn api_url(name: &str, port: u16, path: &str) -> String {
    format!("https://{name}:{port}{path}")
}

/// An HTTPS client for the public API at one gateway's address: `name` resolves to `ip`
/// only, and the certificate must cover `name` and chain to `ca_pem` (or, without one, to
/// the public roots).
pub fn api_client(name: &str, ip: IpAddr, port: u16, ca_pem: Option<&str>, timeout: Duration) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .https_only(true)
        .no_proxy()
        .timeout(timeout)
        .resolve(name, SocketAddr::new(ip, port))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca_pem {
        let cert = reqwest::Certificate::from_pem(ca.as_bytes()).map_err(|e| ClientError::Ca(e.to_string()))?;
        b = b.tls_built_in_root_certs(false).add_root_certificate(cert);
    }
    b.build().map_err(|e| ClientError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "api.exa.example.internal";

    #[test]
    fn a_generated_identity_serves_its_name_and_no_other() {
        let g = generate("exa", NAME).unwrap();
        let now = SystemTime::now();
        assert_eq!(identity_problem(g.chain_pem.as_bytes(), g.key_pem.as_bytes(), NAME, now), None);
        let other = identity_problem(g.chain_pem.as_bytes(), g.key_pem.as_bytes(), "api.other.example", now).unwrap();
        assert!(other.contains("does not cover api.other.example") && other.contains(NAME), "{other}");
        let later = now + Duration::from_secs((GENERATED_VALID_DAYS + 1) * 86_400);
        assert!(identity_problem(g.chain_pem.as_bytes(), g.key_pem.as_bytes(), NAME, later).unwrap().contains("expired"));
        let valid_s = valid_for_s(g.chain_pem.as_bytes(), now).unwrap();
        assert!(valid_s > (GENERATED_VALID_DAYS as i64 - 1) * 86_400, "{valid_s}");
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (a, b) = (generate("exa", NAME).unwrap(), generate("exa", NAME).unwrap());
        let p = identity_problem(a.chain_pem.as_bytes(), b.key_pem.as_bytes(), NAME, SystemTime::now()).unwrap();
        assert!(p.contains("not the certificate's"), "{p}");
    }

    #[test]
    fn files_that_are_not_pem_are_told_so() {
        let g = generate("exa", NAME).unwrap();
        let p = identity_problem(b"hello", g.key_pem.as_bytes(), NAME, SystemTime::now()).unwrap();
        assert!(p.contains("no PEM certificate"), "{p}");
        let p = identity_problem(g.chain_pem.as_bytes(), b"", NAME, SystemTime::now()).unwrap();
        assert!(p.contains("no PEM private key"), "{p}");
    }

    #[test]
    fn a_wildcard_covers_one_label() {
        let g = generate("exa", "*.exa.example.internal").unwrap();
        let now = SystemTime::now();
        assert_eq!(identity_problem(g.chain_pem.as_bytes(), g.key_pem.as_bytes(), NAME, now), None);
        assert!(identity_problem(g.chain_pem.as_bytes(), g.key_pem.as_bytes(), "a.b.exa.example.internal", now).is_some());
    }
}
