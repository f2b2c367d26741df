//! The compound's trust: a private CA, the broker's server certificate and configuration, one client
//! certificate per gate, an administrator's certificate, and the shared secret that seals announcements end
//! to end (`facegate compound init`, `add-gate`, `remove-gate`).
//!
//! Each certificate carries an identity (an e-mail name with a random part) that the broker maps to a user
//! with that gate's permissions only (`verify_and_map`): publish under its own subjects, read the stream,
//! never change or delete it. Removing a gate drops its user from the broker's configuration, which revokes
//! its certificate (nats-server reads no revocation list); issuing a gate again gives it a new identity.
//!
//! Private keys are written owner-only and never printed. The CA key is needed only to add a gate: keep the
//! compound folder offline (a USB stick in the office safe), not on a gate.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
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
    /// The gate to remove is not one of the compound's.
    #[error("the compound has no gate {0:?}; `facegate compound add-gate` lists none by that name")]
    UnknownGate(String),
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
    /// The compound's description could not be written.
    #[error("cannot write the compound's description: {0}")]
    MetaWrite(#[from] toml::ser::Error),
    /// The certificate library failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// Where the broker's files will live on the broker host (absolute paths go into its configuration).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
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

/// The compound's description (`compound.toml`): written by `init`, kept up to date by `add-gate` and
/// `remove-gate`; the broker's configuration is made from it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Meta {
    name: String,
    broker: BrokerPlan,
    /// The administrator certificate's identity (all rights on the broker; kept in this folder only).
    admin: String,
    /// The gates whose current certificates the broker accepts.
    #[serde(default, rename = "gate")]
    gates: Vec<Member>,
}

/// A gate of the compound and the identity of its current certificate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// The gate's name.
    pub name: String,
    /// The e-mail name in its certificate, which the broker maps to its permissions.
    pub identity: String,
}

/// A fresh identity for a certificate of `who`: a new one at every issue, so a reissued gate's old
/// certificate maps to nothing.
fn identity(compound: &str, who: &str) -> String {
    let random: [u8; 8] = rand::random();
    format!("{who}.{}@{compound}.facegate.invalid", data_encoding::HEXLOWER.encode(&random))
}

const META_HEADER: &str =
    "# The compound's description: made by `facegate compound init`, kept up to date by `add-gate` and\n\
                           # `remove-gate`, which also rewrite broker/nats-server.conf from it. Do not edit by hand.\n";

fn read_meta(dir: &Path) -> Result<Meta, CertError> {
    let path = dir.join("compound.toml");
    let text = std::fs::read_to_string(&path).map_err(|_| CertError::Missing(dir.to_path_buf()))?;
    let meta: Meta = toml::from_str(&text).map_err(|source| CertError::Meta { path: path.clone(), source })?;
    if !valid_name(&meta.name) {
        return Err(CertError::Name(meta.name));
    }
    Ok(meta)
}

/// Writes the description and the broker configuration made from it.
fn write_meta(dir: &Path, meta: &Meta) -> Result<Vec<PathBuf>, CertError> {
    let path = dir.join("compound.toml");
    write_file(&path, format!("{META_HEADER}{}", toml::to_string(meta)?).as_bytes(), 0o644)?;
    let conf = dir.join("broker").join("nats-server.conf");
    write_file(&conf, nats_config(&meta.name, &meta.broker, &meta.admin, &meta.gates).as_bytes(), 0o644)?;
    Ok(vec![path, conf])
}

/// Creates a compound in `dir` (which must not hold one): the CA, the shared secret, the administrator's
/// certificate (`admin/`), and the broker's certificate and NATS configuration under `dir/broker/`. Returns
/// the files written.
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

    // The shared secret: written by the key module, as every key file (0600, created exclusively).
    let secret = dir.join("compound.key");
    MasterKeyFile::new(secret.clone(), crate::protect::keys::KeyWrap::Plain)
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

    let admin = identity(compound, "admin");
    written.extend(issue_client(dir, &dir.join("admin"), compound, "facegate administrator", &admin, &issuer)?);
    let meta = Meta { name: compound.to_owned(), broker: broker.clone(), admin, gates: Vec::new() };
    written.extend(write_meta(dir, &meta)?);
    Ok(written)
}

/// Issues a client certificate carrying `identity` into `out` (`gate.pem`, `gate.key`, `ca.pem`).
fn issue_client(
    dir: &Path,
    out: &Path,
    compound: &str,
    common_name: &str,
    identity: &str,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<Vec<PathBuf>, CertError> {
    let key = KeyPair::generate()?;
    let mut params = leaf_params(compound, common_name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
    let email = identity.try_into().map_err(|_| CertError::Name(identity.to_owned()))?;
    params.subject_alt_names = vec![SanType::Rfc822Name(email)];
    let cert = params.signed_by(&key, issuer)?;
    let ca = std::fs::read(dir.join("ca.pem")).map_err(io(&dir.join("ca.pem")))?;
    let files = [
        (out.join("gate.pem"), cert.pem().into_bytes(), 0o644),
        (out.join("gate.key"), key.serialize_pem().into_bytes(), 0o600),
        (out.join("ca.pem"), ca, 0o644),
    ];
    let mut written = Vec::new();
    for (path, contents, mode) in files {
        write_file(&path, &contents, mode)?;
        written.push(path);
    }
    Ok(written)
}

/// The NATS server configuration of a compound's broker: TLS with client certificates required (mutual
/// TLS: only holders of a certificate from the compound's CA connect), each certificate mapped by its
/// identity to a user with only its gate's permissions, JetStream on disk.
pub fn nats_config(compound: &str, broker: &BrokerPlan, admin: &str, gates: &[Member]) -> String {
    let d = broker.install_dir.display();
    let stream = super::envelope::stream_name(compound);
    let mut users = format!("    # The administrator (certificate in the compound folder's admin/): every right.\n    {{ user: \"{admin}\" }}\n");
    for gate in gates {
        let publish = [
            super::envelope::gate_subjects(compound, &gate.name),
            "$JS.API.INFO".to_owned(),
            format!("$JS.API.STREAM.INFO.{stream}"),
            format!("$JS.API.STREAM.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.*"),
            format!("$JS.API.CONSUMER.INFO.{stream}.*"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.*"),
        ];
        let publish: Vec<String> = publish.iter().map(|s| format!("\"{s}\"")).collect();
        users.push_str(&format!(
            "    # Gate {name}: publishes under its own subjects, reads the stream, changes nothing else.\n    \
             {{ user: \"{identity}\", permissions: {{\n        publish: {{ allow: [{publish}] }}\n        \
             subscribe: {{ allow: [\"{inbox}.>\"] }}\n    }} }}\n",
            name = gate.name,
            identity = gate.identity,
            publish = publish.join(", "),
            inbox = super::envelope::inbox_prefix(compound, &gate.name),
        ));
    }
    format!(
        "# The broker of facegate compound {compound} (NATS with JetStream). Made by `facegate compound init`,\n\
         # rewritten by `add-gate` and `remove-gate`: install it again on the broker host after each\n\
         # (deploy/broker/README.md), then reload the broker.\n\
         server_name: \"facegate-{compound}\"\n\
         listen: \"{listen}\"\n\
         # Mutual TLS: a client must present a certificate issued by the compound's CA, whose identity (an\n\
         # e-mail name) is one of the users below. A removed gate's certificate maps to no user: refused.\n\
         tls {{\n  cert_file: \"{d}/server.pem\"\n  key_file: \"{d}/server.key\"\n  ca_file: \"{d}/ca.pem\"\n  verify_and_map: true\n  timeout: 3\n}}\n\
         authorization {{\n  users = [\n{users}  ]\n}}\n\
         # Durable announcements (sealed templates, tombstones, counts): one message per subject, on disk.\n\
         jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 16MB\n  max_file_store: 256MB\n}}\n\
         max_payload: 1MB\n\
         # No plaintext monitoring port: nothing about the compound is served over HTTP.\n",
        listen = broker.listen,
        store = broker.store_dir.display(),
    )
}

/// Adds a gate to the compound in `dir`, or issues it again (a new identity: its previous certificate stops
/// working once the broker's configuration is reloaded): its client certificate and key, the CA certificate
/// and a copy of the shared secret under `dir/gates/<gate>/`, to be copied into the gate's key folder; the
/// broker's configuration rewritten. Returns the gate's folder.
pub fn add_gate(dir: &Path, gate: &str) -> Result<PathBuf, CertError> {
    if !valid_name(gate) || gate == "admin" {
        return Err(CertError::Name(gate.to_owned()));
    }
    let mut meta = read_meta(dir)?;
    let compound = meta.name.clone();
    let ca_pem_path = dir.join("ca.key");
    let ca_key_pem = std::fs::read_to_string(&ca_pem_path).map_err(|_| CertError::Missing(dir.to_path_buf()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::new(ca_params(&compound), &ca_key);
    let out = dir.join("gates").join(gate);
    let member = Member { name: gate.to_owned(), identity: identity(&compound, gate) };
    issue_client(dir, &out, &compound, gate, &member.identity, &issuer)?;
    let secret =
        zeroize::Zeroizing::new(std::fs::read(dir.join("compound.key")).map_err(io(&dir.join("compound.key")))?);
    write_file(&out.join("compound.key"), &secret, 0o600)?;
    meta.gates.retain(|g| g.name != gate);
    meta.gates.push(member);
    write_meta(dir, &meta)?;
    Ok(out)
}

/// Removes a gate from the compound in `dir`: the broker's configuration no longer maps its certificate to
/// any user (install it on the broker and reload: the gate is disconnected and refused from then on), and
/// its folder in the compound folder (its key and a copy of the shared secret) is deleted. Returns the
/// broker configuration to install.
pub fn remove_gate(dir: &Path, gate: &str) -> Result<PathBuf, CertError> {
    let mut meta = read_meta(dir)?;
    let before = meta.gates.len();
    meta.gates.retain(|g| g.name != gate);
    if meta.gates.len() == before {
        return Err(CertError::UnknownGate(gate.to_owned()));
    }
    write_meta(dir, &meta)?;
    let folder = dir.join("gates").join(gate);
    if folder.exists() {
        std::fs::remove_dir_all(&folder).map_err(io(&folder))?;
    }
    Ok(dir.join("broker").join("nats-server.conf"))
}

/// The gates of the compound in `dir` whose certificates the broker accepts.
pub fn gates(dir: &Path) -> Result<Vec<Member>, CertError> {
    Ok(read_meta(dir)?.gates)
}

/// The compound's name, from `dir/compound.toml`.
pub fn compound_name(dir: &Path) -> Result<String, CertError> {
    Ok(read_meta(dir)?.name)
}

/// The gate's TLS client settings: the compound's CA, and the gate's certificate with its key, which is read
/// through the device's key root (sealed at rest, in memory only here).
pub fn client_tls(
    settings: &super::LinkSettings,
    wrap: &crate::protect::keys::KeyWrap,
) -> Result<rustls::ClientConfig, super::link::LinkError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let setup = |reason: String| super::link::LinkError::Setup { broker: settings.broker.clone(), reason };
    let pem_error = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |e: rustls::pki_types::pem::Error| setup(format!("{path}: {e} (made by `facegate compound add-gate`)"))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&settings.ca).map_err(pem_error(&settings.ca))? {
        roots
            .add(cert.map_err(pem_error(&settings.ca))?)
            .map_err(|e| setup(format!("{}: {e}", settings.ca.display())))?;
    }
    let chain = CertificateDer::pem_file_iter(&settings.cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(pem_error(&settings.cert))?;
    let key_pem =
        crate::protect::keys::read_secret(&settings.key, wrap).map_err(|e| setup(e.to_string()))?.ok_or_else(|| {
            setup(format!("key file {} is missing (made by `facegate compound add-gate`)", settings.key.display()))
        })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(pem_error(&settings.key))?;
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_root_certificates(roots).with_client_auth_cert(chain, key))
        .map_err(|e| setup(format!("TLS settings: {e}")))
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
        assert!(conf.contains("verify_and_map: true") && conf.contains("jetstream"), "{conf}");
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
    fn each_gate_gets_its_own_identity_and_only_its_own_subjects_and_a_removed_gate_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("compound");
        init(&root, "maple-court", &BrokerPlan::default()).unwrap();
        add_gate(&root, "gate-a").unwrap();
        add_gate(&root, "gate-b").unwrap();
        let first = gates(&root).unwrap();
        assert_eq!(first.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["gate-a", "gate-b"]);
        let conf = std::fs::read_to_string(root.join("broker/nats-server.conf")).unwrap();
        for gate in &first {
            assert!(conf.contains(&format!("user: \"{}\"", gate.identity)), "{conf}");
            assert!(conf.contains(&format!("\"facegate.maple-court.{}.>\"", gate.name)), "{conf}");
            // The identity is in the certificate, as the broker will read it.
            let pem = std::fs::read(root.join("gates").join(&gate.name).join("gate.pem")).unwrap();
            let der = pem_body(&pem);
            assert!(der.windows(gate.identity.len()).any(|w| w == gate.identity.as_bytes()));
        }
        // No gate may update, delete or purge the stream, or delete its messages.
        for forbidden in
            ["STREAM.UPDATE", "STREAM.DELETE", "STREAM.PURGE", "STREAM.MSG.DELETE", "\"facegate.maple-court.>\""]
        {
            assert!(!conf.contains(forbidden), "{forbidden} in {conf}");
        }
        // Issued again: a new identity, the old one gone from the broker's users.
        add_gate(&root, "gate-a").unwrap();
        let again = gates(&root).unwrap();
        let a = |list: &[Member]| list.iter().find(|g| g.name == "gate-a").unwrap().identity.clone();
        assert_ne!(a(&first), a(&again));
        let conf = std::fs::read_to_string(root.join("broker/nats-server.conf")).unwrap();
        assert!(!conf.contains(&a(&first)) && conf.contains(&a(&again)));
        remove_gate(&root, "gate-b").unwrap();
        let conf = std::fs::read_to_string(root.join("broker/nats-server.conf")).unwrap();
        assert!(!conf.contains(&first[1].identity) && !conf.contains("facegate.maple-court.gate-b"), "{conf}");
        assert!(!root.join("gates/gate-b").exists(), "the removed gate's key and secret copy are still here");
        assert!(matches!(remove_gate(&root, "gate-b"), Err(CertError::UnknownGate(_))));
        assert!(matches!(add_gate(&root, "admin"), Err(CertError::Name(_))));
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
