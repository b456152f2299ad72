//! `[tls]`: the public API's certificate files, read and checked before any API call.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::rules::{expand_home, shown};
use super::validate::Validator;
use super::{ApiTls, ConfigError, TlsRaw};

impl Validator<'_> {
    /// The certificate the gateways serve: the operator's files, or (a local cloud only)
    /// one provision makes. On AWS, `[tls]` is required.
    pub(super) fn tls(&self, raw: Option<&TlsRaw>, api_name: &str, local: bool, dir: &Path) -> Result<ApiTls, ConfigError> {
        let Some(t) = raw else {
            if local {
                return Ok(ApiTls::Generated);
            }
            // Pointed at the name that needs the certificate: the table itself is not there.
            let at_name = self.err(&["dns", "api_record"], "", "");
            return Err(ConfigError {
                field: "tls".into(),
                problem: format!("is missing: on AWS the public API is served over HTTPS only, with a certificate for {api_name}"),
                fix: "add a [tls] table with cert_file and key_file (PEM files; the certificate must cover dns.api_record)".into(),
                ..at_name
            });
        };
        let cert_file = self.tls_file(&["tls", "cert_file"], &t.cert_file, dir)?;
        let key_file = self.tls_file(&["tls", "key_file"], &t.key_file, dir)?;
        let ca_file = match t.ca_file.as_deref() {
            Some(p) => Some(self.tls_file(&["tls", "ca_file"], p, dir)?),
            None => None,
        };
        let (cert, key) = (self.read(&["tls", "cert_file"], &cert_file)?, self.read(&["tls", "key_file"], &key_file)?);
        if let Some(problem) = crate::tls::identity_problem(&cert, &key, api_name, SystemTime::now()) {
            let at = if problem.starts_with("the key file") || problem.starts_with("the private key") { "key_file" } else { "cert_file" };
            return Err(self.err(
                &["tls", at],
                format!("{}: {problem}", shown(&cert_file.display().to_string())),
                format!(
                    "use a current certificate whose subjectAltName covers {api_name} (exactly, or *.{}), with its own private key",
                    parent(api_name)
                ),
            ));
        }
        if let Some(ca) = &ca_file {
            let pem = self.read(&["tls", "ca_file"], ca)?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(self.err(
                    &["tls", "ca_file"],
                    format!("{} holds no PEM certificate", shown(&ca.display().to_string())),
                    "point it at the PEM certificate of the CA that signed cert_file, or remove it when that CA is public",
                ));
            }
        }
        Ok(ApiTls::Files { cert_file, key_file, ca_file })
    }

    fn tls_file(&self, at: &[&str], p: &str, dir: &Path) -> Result<PathBuf, ConfigError> {
        let path = expand_home(p);
        let path = if path.is_relative() { dir.join(path) } else { path };
        if path.is_dir() {
            return Err(self.err(at, format!("{} is a directory", shown(&path.display().to_string())), "point it at a PEM file"));
        }
        Ok(std::path::absolute(&path).unwrap_or(path))
    }

    fn read(&self, at: &[&str], path: &Path) -> Result<Vec<u8>, ConfigError> {
        std::fs::read(path).map_err(|e| {
            self.err(
                at,
                format!("cannot read {}: {e}", shown(&path.display().to_string())),
                "point it at an existing PEM file this user can read (a relative path is taken from the config file's directory)",
            )
        })
    }
}

fn parent(name: &str) -> &str {
    name.split_once('.').map(|(_, rest)| rest).unwrap_or(name)
}
