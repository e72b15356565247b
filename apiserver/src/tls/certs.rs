//! The serving certificates: the default one (`--tls-cert-file`, or self-signed: kept in `--cert-dir`, or made at
//! start) and those chosen by the
//! name the client asks for (`--tls-sni-cert-key`), as k8s.io/apiserver's dynamic serving certificates choose them.
//! Every file is read again every [`CERT_RELOAD_INTERVAL`]; a renewed set is served to new connections, and
//! connections already open keep the certificate they were given.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::settings::NamedCertKey;

/// A serving certificate and key in PEM.
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ServingCert {
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            cert_pem: std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?,
        })
    }

    /// A self-signed certificate for `hosts` (DNS names or IP addresses).
    pub fn self_signed(hosts: &[String]) -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate().context("generating a key")?;
        let mut params = rcgen::CertificateParams::new(hosts.to_vec()).context("certificate parameters")?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "backup-apiserver");
        let cert = params.self_signed(&key).context("self-signing")?;
        Ok(Self { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// The rustls server config serving only this certificate, with the default versions and suites (tests).
    pub fn server_config(
        &self,
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    ) -> anyhow::Result<rustls::ServerConfig> {
        let fixed = Self { cert_pem: self.cert_pem.clone(), key_pem: self.key_pem.clone() };
        let certs = ServingCerts::new(DefaultCert::Fixed(fixed), Vec::new())?;
        super::server_config(verifier, Arc::new(certs), &super::TlsSettings::default())
    }

    /// The certificate chain and key, checked to belong together.
    fn certified_key(&self) -> anyhow::Result<CertifiedKey> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .context("parsing the serving certificate")?;
        if certs.is_empty() {
            anyhow::bail!("no certificate in the serving certificate file");
        }
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).context("parsing the serving key")?;
        let key = rustls::crypto::ring::sign::any_supported_type(&key).context("the serving key's type")?;
        let certified = CertifiedKey::new(certs, key);
        certified.keys_match().context("the serving certificate and key do not match")?;
        Ok(certified)
    }
}

/// The default certificate the flags describe, with its PEM (for the standalone kubeconfig's CA): `files`
/// (`--tls-cert-file`, `--tls-private-key-file`); else the self-signed pair in `cert_dir` (`apiserver.crt`,
/// `apiserver.key`: read when both are there, else made for `hosts` and written, the key readable by its owner
/// only, as upstream's `MaybeDefaultWithSelfSignedCerts`); else one made in memory for `hosts`.
pub fn default_cert(
    files: Option<(&Path, &Path)>,
    cert_dir: Option<&Path>,
    hosts: &[String],
) -> anyhow::Result<(DefaultCert, String)> {
    let (cert, key) = match (files, cert_dir) {
        (Some((cert, key)), _) => (cert.to_path_buf(), key.to_path_buf()),
        (None, Some(dir)) => {
            let (cert, key) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
            if !(cert.exists() && key.exists()) {
                write_self_signed(dir, &cert, &key, hosts)?;
            }
            (cert, key)
        }
        (None, None) => {
            let made = ServingCert::self_signed(hosts)?;
            let pem = made.cert_pem.clone();
            return Ok((DefaultCert::Fixed(made), pem));
        }
    };
    let pem = ServingCert::load(&cert, &key)?.cert_pem;
    Ok((DefaultCert::Files { cert, key }, pem))
}

fn write_self_signed(dir: &Path, cert: &Path, key: &Path, hosts: &[String]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating --cert-dir {}", dir.display()))?;
    let made = ServingCert::self_signed(hosts)?;
    let mut key_file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key)
        .with_context(|| format!("writing {}", key.display()))?;
    key_file.write_all(made.key_pem.as_bytes()).with_context(|| format!("writing {}", key.display()))?;
    std::fs::write(cert, &made.cert_pem).with_context(|| format!("writing {}", cert.display()))?;
    tracing::info!(cert = %cert.display(), "wrote a self-signed serving certificate");
    Ok(())
}

/// How often the serving certificate files are checked for changes (cert-manager renews into the same Secret).
pub const CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Where the default certificate comes from.
pub enum DefaultCert {
    /// `--tls-cert-file` and `--tls-private-key-file`, reloaded.
    Files { cert: PathBuf, key: PathBuf },
    /// Made at start; never changes.
    Fixed(ServingCert),
}

/// The certificates in force, swapped whole when a file changes.
#[derive(Debug)]
struct Loaded {
    default: Arc<CertifiedKey>,
    /// Lower-case names (`*.example.com` for wildcards) to their certificate.
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// The serving certificates: rustls asks it for the certificate of each handshake.
pub struct ServingCerts {
    default: DefaultCert,
    sni: Vec<NamedCertKey>,
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for ServingCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCerts").field("sni", &self.sni).finish_non_exhaustive()
    }
}

impl ServingCerts {
    /// Load every certificate; any that does not load (missing, mismatched key) is an error.
    pub fn new(default: DefaultCert, sni: Vec<NamedCertKey>) -> anyhow::Result<Self> {
        let loaded = load(&default, &sni)?;
        for (i, named) in sni.iter().enumerate() {
            tracing::info!(index = i, cert = %named.cert_file.display(), explicit_names = ?named.names, "loaded SNI certificate");
        }
        Ok(Self { default, sni, current: RwLock::new(Arc::new(loaded)) })
    }

    /// Re-read the files every [`CERT_RELOAD_INTERVAL`] for as long as this is in use; a set that does not load
    /// (half-written, mismatched) is logged and the certificates in force kept.
    pub fn watch_files(self: &Arc<Self>) {
        let files = self.files();
        if files.is_empty() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let read_all = || files.iter().map(|f| std::fs::read(f).ok()).collect::<Vec<_>>();
            let mut last = read_all();
            let mut tick = tokio::time::interval(CERT_RELOAD_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                let now = read_all();
                if now.iter().any(Option::is_none) || now == last {
                    continue;
                }
                match load(&this.default, &this.sni) {
                    Ok(loaded) => {
                        if let Ok(mut current) = this.current.write() {
                            *current = Arc::new(loaded);
                        }
                        tracing::info!("serving certificates reloaded");
                        last = now;
                    }
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "keeping the serving certificates in force"),
                }
            }
        });
    }

    /// The files read for these certificates.
    fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let DefaultCert::Files { cert, key } = &self.default {
            files.extend([cert.clone(), key.clone()]);
        }
        for named in &self.sni {
            files.extend([named.cert_file.clone(), named.key_file.clone()]);
        }
        files
    }

    /// The certificate for a client that asked for `server_name` (none: the default).
    fn choose(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.current.read().ok()?.clone();
        Some(server_name.and_then(|name| lookup(&loaded.by_name, name)).unwrap_or_else(|| loaded.default.clone()))
    }
}

impl rustls::server::ResolvesServerCert for ServingCerts {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(hello.server_name())
    }
}

/// Go's `getCertificate`: the name itself, then the name with its first label replaced by `*`.
fn lookup(by_name: &HashMap<String, Arc<CertifiedKey>>, name: &str) -> Option<Arc<CertifiedKey>> {
    let name = name.to_ascii_lowercase();
    if let Some(cert) = by_name.get(&name) {
        return Some(cert.clone());
    }
    let (_, rest) = name.split_once('.')?;
    by_name.get(&format!("*.{rest}")).cloned()
}

fn load(default: &DefaultCert, sni: &[NamedCertKey]) -> anyhow::Result<Loaded> {
    let default = match default {
        DefaultCert::Files { cert, key } => ServingCert::load(cert, key)?.certified_key(),
        DefaultCert::Fixed(cert) => cert.certified_key(),
    }
    .context("the serving certificate")?;
    let mut implicit = HashMap::new();
    let mut explicit = HashMap::new();
    // Backwards, so that for a name two certificates claim the same way, the earlier flag wins (upstream's rule).
    for (i, named) in sni.iter().enumerate().rev() {
        let what = || format!("SNI certificate [{i}] {}", named.cert_file.display());
        let cert = ServingCert::load(&named.cert_file, &named.key_file).with_context(what)?;
        let certified = Arc::new(cert.certified_key().with_context(what)?);
        if named.names.is_empty() {
            for name in certificate_names(&certified.cert[0]).with_context(what)? {
                implicit.insert(name.to_ascii_lowercase(), certified.clone());
            }
        } else {
            for name in &named.names {
                explicit.insert(name.to_ascii_lowercase(), certified.clone());
            }
        }
    }
    // Names given on the command line win over names read from certificates.
    implicit.extend(explicit);
    Ok(Loaded { default: Arc::new(default), by_name: implicit })
}

/// The names a certificate serves (upstream's `getCertificateNames`): its common name when that is a DNS name
/// (`*` or `*.`-prefixed allowed; never an IP address), and its DNS subject alternative names. IP addresses are
/// never names: SNI carries none.
fn certificate_names(cert: &CertificateDer<'_>) -> anyhow::Result<Vec<String>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).context("parsing the certificate")?;
    let mut names = Vec::new();
    if let Some(cn) = parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) {
        let is_ip = cn.parse::<std::net::IpAddr>().is_ok();
        let is_domain =
            cn == "*" || backup_apis::objectmeta::is_dns1123_subdomain(cn.strip_prefix("*.").unwrap_or(cn)).is_empty();
        if !is_ip && is_domain {
            names.push(cn.to_string());
        }
    }
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_string());
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, sans: &[&str]) -> ServingCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        ServingCert { cert_pem: params.self_signed(&key).unwrap().pem(), key_pem: key.serialize_pem() }
    }

    fn write(dir: &Path, name: &str, cert: &ServingCert) -> (PathBuf, PathBuf) {
        let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&c, &cert.cert_pem).unwrap();
        std::fs::write(&k, &cert.key_pem).unwrap();
        (c, k)
    }

    fn named(files: (PathBuf, PathBuf), names: &[&str]) -> NamedCertKey {
        NamedCertKey { cert_file: files.0, key_file: files.1, names: names.iter().map(|n| n.to_string()).collect() }
    }

    #[test]
    fn names_of_a_certificate() {
        let der = |c: &ServingCert| CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap();
        let names = certificate_names(&der(&cert("api.example.com", &["a.example.com", "10.0.0.1"]))).unwrap();
        assert_eq!(names, ["api.example.com", "a.example.com"]);
        assert_eq!(certificate_names(&der(&cert("10.0.0.2", &[]))).unwrap(), Vec::<String>::new());
        assert_eq!(certificate_names(&der(&cert("Backup Server", &[]))).unwrap(), Vec::<String>::new());
        assert_eq!(certificate_names(&der(&cert("*.svc.example", &[]))).unwrap(), ["*.svc.example"]);
    }

    #[test]
    fn choice_by_server_name() {
        let dir = tempfile::tempdir().unwrap();
        let default = cert("default", &["localhost"]);
        let default_der = CertificateDer::from_pem_slice(default.cert_pem.as_bytes()).unwrap();
        let wild = write(dir.path(), "wild", &cert("wild", &["*.example.com"]));
        let exact = write(dir.path(), "exact", &cert("exact", &["api.example.com"]));
        let first = write(dir.path(), "first", &cert("first", &["shared.test"]));
        let second = write(dir.path(), "second", &cert("second", &["shared.test", "other.test"]));
        let explicit = write(dir.path(), "explicit", &cert("explicit", &["unrelated.test"]));
        let certs = ServingCerts::new(
            DefaultCert::Fixed(default),
            vec![
                named(wild, &[]),
                named(exact, &[]),
                named(first, &[]),
                named(second, &[]),
                named(explicit, &["other.test"]),
            ],
        )
        .unwrap();
        let cn_of = |name: Option<&str>| {
            let chosen = certs.choose(name).unwrap();
            if chosen.cert[0] == default_der {
                return "default".to_string();
            }
            let (_, parsed) = x509_parser::parse_x509_certificate(chosen.cert[0].as_ref()).unwrap();
            parsed.subject().iter_common_name().next().unwrap().as_str().unwrap().to_string()
        };
        assert_eq!(cn_of(None), "default");
        assert_eq!(cn_of(Some("nothing.test")), "default");
        assert_eq!(cn_of(Some("api.example.com")), "exact", "an exact name wins over a wildcard");
        assert_eq!(cn_of(Some("API.Example.com")), "exact", "names are case-insensitive");
        assert_eq!(cn_of(Some("www.example.com")), "wild");
        assert_eq!(cn_of(Some("a.b.example.com")), "default", "a wildcard covers one label");
        assert_eq!(cn_of(Some("shared.test")), "first", "the earlier flag wins");
        assert_eq!(cn_of(Some("other.test")), "explicit", "names on the command line win over the certificate's");
        assert_eq!(cn_of(Some("unrelated.test")), "default", "explicit names replace the certificate's");
    }

    #[test]
    fn the_cert_dir_keeps_the_self_signed_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let hosts = ["localhost".to_string()];
        let (first, pem) = default_cert(None, Some(&certs), &hosts).unwrap();
        assert!(matches!(first, DefaultCert::Files { .. }));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.join("apiserver.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (_, again) = default_cert(None, Some(&certs), &hosts).unwrap();
        assert_eq!(pem, again, "a restart serves the same certificate");
        let (_, in_memory) = default_cert(None, None, &hosts).unwrap();
        assert_ne!(pem, in_memory);
    }

    #[test]
    fn a_certificate_that_does_not_load_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = write(dir.path(), "a", &cert("a", &["a.test"]));
        let (_, other_key) = write(dir.path(), "b", &cert("b", &["b.test"]));
        let e = ServingCerts::new(DefaultCert::Fixed(cert("d", &[])), vec![named((c, other_key), &[])]).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("SNI certificate [0]") && e.contains("do not match"), "{e}");
    }
}
