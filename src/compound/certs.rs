//! The compound's trust: a private CA, the broker's server certificate and configuration, one client
//! certificate per gate, and the shared secret that seals announcements end to end
//! (`facegate compound init` and `facegate compound add-gate`).
//!
//! Private keys are written owner-only and never printed. The CA key is needed only to add a gate: keep the
//! compound folder offline (a USB stick in the office safe), not on a gate.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::envelope::valid_name;
use crate::protect::keys::MasterKeyFile;

/// Errors of certificate making; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A name that cannot be a compound or gate name.
    #[error("{0:?} is not a valid name: 1 to 32 of a-z, 0-9 and '-' (it becomes part of broker subjects)")]
    Name(String),
    /// The folder already holds a compound (its CA would be replaced and every gate locked out).
    #[error("{0} already holds a compound CA; use `facegate compound add-gate`, or choose an empty folder")]
    Exists(PathBuf),
    /// The folder holds no compound.
    #[error("{0} holds no compound (no ca.key / compound.toml); run `facegate compound init` first")]
    Missing(PathBuf),
    /// A file could not be read or written.
    #[error("{}: {source}; check the folder's owner and free space", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The compound's shared secret could not be made.
    #[error("{}: {source}", path.display())]
    Secret {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::protect::keys::KeyError,
    },
    /// The compound's description file is not what `compound init` wrote.
    #[error("{}: {source}; restore it from the compound folder's backup", path.display())]
    Meta {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// The certificate library failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// Where the broker's files will live on the broker host (absolute paths go into its configuration).
#[derive(Clone, Debug)]
pub struct BrokerPlan {
    /// Host names and addresses gates use to reach the broker (the server certificate's names).
    pub hosts: Vec<String>,
    /// `host:port` the broker listens on.
    pub listen: String,
    /// Folder on the broker host holding `server.pem`, `server.key` and `ca.pem`.
    pub install_dir: PathBuf,
    /// JetStream's durable store on the broker host.
    pub store_dir: PathBuf,
}

impl Default for BrokerPlan {
    fn default() -> Self {
        Self {
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
            listen: "0.0.0.0:4222".into(),
            install_dir: PathBuf::from("/etc/nats/facegate"),
            store_dir: PathBuf::from("/var/lib/nats/facegate"),
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io { path: path.to_path_buf(), source }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
    }
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path).map_err(io(path))?;
    file.write_all(contents).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn validity(params: &mut CertificateParams, years: i32) {
    let now = crate::store::unix_now();
    // Civil year from Unix time is close enough for a validity window of years.
    let year = i32::try_from(1970 + now / 31_556_952).unwrap_or(2026);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn ca_params(compound: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, format!("facegate compound {compound}"));
    dn.push(DnType::CommonName, format!("facegate {compound} CA"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params
}

fn leaf_params(
    compound: &str,
    common_name: &str,
    names: Vec<String>,
    purpose: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, format!("facegate compound {compound}"));
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![purpose];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, 5);
    Ok(params)
}

/// Creates a compound in `dir` (which must not hold one): the CA, the shared secret, and the broker's
/// certificate and NATS configuration under `dir/broker/`. Returns the files written.
pub fn init(dir: &Path, compound: &str, broker: &BrokerPlan) -> Result<Vec<PathBuf>, CertError> {
    if !valid_name(compound) {
        return Err(CertError::Name(compound.to_owned()));
    }
    if dir.join("ca.key").exists() || dir.join("compound.toml").exists() {
        return Err(CertError::Exists(dir.to_path_buf()));
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
    let ca_key = KeyPair::generate()?;
    let mut params = ca_params(compound);
    validity(&mut params, 10);
    let ca_cert = params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params(compound), &ca_key);
    let mut written = Vec::new();
    let put = |written: &mut Vec<PathBuf>, path: PathBuf, contents: &[u8], mode: u32| -> Result<(), CertError> {
        write_file(&path, contents, mode)?;
        written.push(path);
        Ok(())
    };
    put(&mut written, dir.join("ca.key"), ca_key.serialize_pem().as_bytes(), 0o600)?;
    put(&mut written, dir.join("ca.pem"), ca_cert.pem().as_bytes(), 0o644)?;
    put(
        &mut written,
        dir.join("compound.toml"),
        format!("# Made by `facegate compound init`; read by `facegate compound add-gate`.\nname = \"{compound}\"\n")
            .as_bytes(),
        0o644,
    )?;

    // The shared secret: written by the key module, as every key file (0600, created exclusively).
    let secret = dir.join("compound.key");
    MasterKeyFile::new(secret.clone(), None)
        .load_or_create()
        .map_err(|source| CertError::Secret { path: secret.clone(), source })?;
    written.push(secret);
    let server_key = KeyPair::generate()?;
    let server = leaf_params(compound, "facegate broker", broker.hosts.clone(), ExtendedKeyUsagePurpose::ServerAuth)?
        .signed_by(&server_key, &issuer)?;
    let broker_dir = dir.join("broker");
    put(&mut written, broker_dir.join("server.pem"), server.pem().as_bytes(), 0o644)?;
    put(&mut written, broker_dir.join("server.key"), server_key.serialize_pem().as_bytes(), 0o600)?;
    put(&mut written, broker_dir.join("ca.pem"), ca_cert.pem().as_bytes(), 0o644)?;
    put(&mut written, broker_dir.join("nats-server.conf"), nats_config(compound, broker).as_bytes(), 0o644)?;
    Ok(written)
}

/// The NATS server configuration of a compound's broker: TLS with client certificates required (mutual
/// TLS: only holders of a certificate from the compound's CA connect), JetStream on disk.
pub fn nats_config(compound: &str, broker: &BrokerPlan) -> String {
    let d = broker.install_dir.display();
    format!(
        "# The broker of facegate compound {compound} (NATS with JetStream). Made by `facegate compound init`.\n\
         # Install on one gate (or any Pi) of the compound: see deploy/broker/README.md.\n\
         server_name: \"facegate-{compound}\"\n\
         listen: \"{listen}\"\n\
         # Mutual TLS: a client must present a certificate issued by the compound's CA.\n\
         tls {{\n  cert_file: \"{d}/server.pem\"\n  key_file: \"{d}/server.key\"\n  ca_file: \"{d}/ca.pem\"\n  verify: true\n  timeout: 3\n}}\n\
         # Durable announcements (sealed templates, tombstones, counts): one message per subject, on disk.\n\
         jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 16MB\n  max_file_store: 256MB\n}}\n\
         max_payload: 1MB\n\
         # No plaintext monitoring port: nothing about the compound is served over HTTP.\n",
        listen = broker.listen,
        store = broker.store_dir.display(),
    )
}

/// Adds a gate to the compound in `dir`: its client certificate and key, the CA certificate and a copy of
/// the shared secret under `dir/gates/<gate>/`, to be copied into the gate's key folder. Returns the folder.
pub fn add_gate(dir: &Path, gate: &str) -> Result<PathBuf, CertError> {
    if !valid_name(gate) {
        return Err(CertError::Name(gate.to_owned()));
    }
    let compound = compound_name(dir)?;
    let ca_pem_path = dir.join("ca.key");
    let ca_key_pem = std::fs::read_to_string(&ca_pem_path).map_err(|_| CertError::Missing(dir.to_path_buf()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::new(ca_params(&compound), &ca_key);
    let gate_key = KeyPair::generate()?;
    let cert =
        leaf_params(&compound, gate, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?.signed_by(&gate_key, &issuer)?;
    let out = dir.join("gates").join(gate);
    write_file(&out.join("gate.pem"), cert.pem().as_bytes(), 0o644)?;
    write_file(&out.join("gate.key"), gate_key.serialize_pem().as_bytes(), 0o600)?;
    let ca = std::fs::read(dir.join("ca.pem")).map_err(io(&dir.join("ca.pem")))?;
    write_file(&out.join("ca.pem"), &ca, 0o644)?;
    let secret =
        zeroize::Zeroizing::new(std::fs::read(dir.join("compound.key")).map_err(io(&dir.join("compound.key")))?);
    write_file(&out.join("compound.key"), &secret, 0o600)?;
    Ok(out)
}

/// The compound's name, from `dir/compound.toml`.
pub fn compound_name(dir: &Path) -> Result<String, CertError> {
    let path = dir.join("compound.toml");
    let text = std::fs::read_to_string(&path).map_err(|_| CertError::Missing(dir.to_path_buf()))?;
    #[derive(serde::Deserialize)]
    struct Meta {
        name: String,
    }
    let meta: Meta = toml::from_str(&text).map_err(|source| CertError::Meta { path: path.clone(), source })?;
    if !valid_name(&meta.name) {
        return Err(CertError::Name(meta.name));
    }
    Ok(meta.name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_then_add_gate_makes_owner_only_keys_and_refuses_a_second_init() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("compound");
        let files = init(&root, "maple-court", &BrokerPlan::default()).unwrap();
        assert!(files.iter().any(|f| f.ends_with("broker/nats-server.conf")));
        let conf = std::fs::read_to_string(root.join("broker/nats-server.conf")).unwrap();
        assert!(conf.contains("verify: true") && conf.contains("jetstream"), "{conf}");
        let gate = add_gate(&root, "gate-a").unwrap();
        for key in ["gate.key", "compound.key"] {
            let mode = std::fs::metadata(gate.join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
        assert_eq!(std::fs::read(gate.join("compound.key")).unwrap().len(), 32);
        let pem = std::fs::read_to_string(gate.join("gate.pem")).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(matches!(init(&root, "maple-court", &BrokerPlan::default()), Err(CertError::Exists(_))));
        assert!(matches!(add_gate(&root, "Gate A"), Err(CertError::Name(_))));
        assert!(matches!(add_gate(&dir.path().join("nothing"), "gate-b"), Err(CertError::Missing(_))));
    }

    #[test]
    fn the_gate_certificate_chains_to_the_compound_ca_and_not_to_another() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        init(&a, "maple-court", &BrokerPlan::default()).unwrap();
        init(&b, "oak-yard", &BrokerPlan::default()).unwrap();
        let gate = add_gate(&a, "gate-a").unwrap();
        let verify = |ca_dir: &Path| {
            let ca = std::fs::read(ca_dir.join("ca.pem")).unwrap();
            let ca_der = rustls::pki_types::CertificateDer::from(pem_body(&ca));
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca_der).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                std::sync::Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .unwrap();
            let leaf =
                rustls::pki_types::CertificateDer::from(pem_body(&std::fs::read(gate.join("gate.pem")).unwrap()));
            verifier.verify_client_cert(&leaf, &[], rustls::pki_types::UnixTime::now()).is_ok()
        };
        assert!(verify(&a), "the gate's certificate does not chain to its own compound's CA");
        assert!(!verify(&b), "another compound's CA accepts the gate");
    }

    fn pem_body(pem: &[u8]) -> Vec<u8> {
        let text = std::str::from_utf8(pem).unwrap();
        let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        data_encoding::BASE64.decode(b64.as_bytes()).unwrap()
    }
}
