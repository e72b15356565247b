//! `backup-apiserver-certs`: the certificates a cluster deployment needs, written as kustomize input.
//!
//! - A CA and the serving certificate of the `backup-apiserver` Service. kube-apiserver's aggregator connects with
//!   TLS ServerName `<svc>.<ns>.svc` and verifies against `APIService.spec.caBundle`, so the certificate carries
//!   `<svc>.<ns>.svc`, `<svc>.<ns>.svc.<cluster domain>`, `<svc>.<ns>` and `<svc>`. Written to
//!   `<config>/components/generated-certs/generated/`: `tls.crt`, `tls.key`, `ca.crt` (the Secret's
//!   secretGenerator input), `ca.key` (not deployed; kept so a rerun re-issues the leaf under the same CA and the
//!   caBundle does not change) and `apiservice-cabundle.yaml` (a patch setting the APIService's caBundle).
//! - For the `etcd-tls` overlay: an etcd CA, the etcd members' server and peer certificates (every member's stable
//!   name `<sts>-<i>.<headless svc>.<ns>.svc[.<domain>]`) and the apiserver's etcd client certificate, written to
//!   `<config>/overlays/etcd-tls/generated/`.
//!
//! Leaf certificates are issued anew on every run; the CAs are reused when present (`--new-ca` replaces them).
//! Everything under `generated/` is gitignored (`/config/**/generated`). No openssl: rcgen, ECDSA P-256.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use clap::Parser;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// Make the CA, serving and (optionally) etcd certificates of a backup-apiserver deployment as kustomize input.
#[derive(Debug, Parser)]
#[command(name = "backup-apiserver-certs", version = backup_apiserver::version::VERSION_LINE)]
struct Args {
    /// The kustomize tree (the repository's `config/`).
    #[arg(long, default_value = "config")]
    config_dir: PathBuf,
    /// Namespace of the Service and the etcd StatefulSet.
    #[arg(long, default_value = "kube-extensions")]
    namespace: String,
    /// Name of the apiserver's Service (the APIService's `spec.service.name`).
    #[arg(long, default_value = "backup-apiserver")]
    service: String,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Name of the etcd StatefulSet.
    #[arg(long, default_value = "backup-etcd")]
    etcd_statefulset: String,
    /// Name of the etcd headless Service (the StatefulSet's `serviceName`).
    #[arg(long, default_value = "backup-etcd")]
    etcd_service: String,
    /// Number of etcd members.
    #[arg(long, default_value_t = 3)]
    etcd_replicas: u32,
    /// Also write the etcd certificates (for the etcd-tls overlay).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    etcd: bool,
    /// Validity of the leaf certificates, in days (rerun to renew: the CA stays).
    #[arg(long, default_value_t = 365)]
    days: i64,
    /// Validity of a new CA, in days.
    #[arg(long, default_value_t = 3650)]
    ca_days: i64,
    /// Replace existing CAs (the APIService's caBundle changes with them).
    #[arg(long)]
    new_ca: bool,
}

/// Where the serving certificate and the caBundle patch go, relative to the config dir.
pub const SERVING_DIR: &str = "components/generated-certs/generated";
/// Where the etcd certificates go, relative to the config dir.
pub const ETCD_DIR: &str = "overlays/etcd-tls/generated";
/// The APIService the caBundle patch targets.
const APISERVICE: &str = "v1.backup.extend-k8s.io";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.config_dir.is_dir() {
        bail!("{} is not a directory (give --config-dir, the repository's config/)", args.config_dir.display());
    }
    let svc = &args.service;
    let ns = &args.namespace;

    let dir = args.config_dir.join(SERVING_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ca_pem, ca) = load_or_create_ca(&dir, "ca", "backup-apiserver-ca", args.ca_days, args.new_ca)?;
    let names = service_dns_names(svc, ns, &args.cluster_domain);
    let (crt, key) = leaf(&ca, &format!("{svc}.{ns}.svc"), &names, &[ExtendedKeyUsagePurpose::ServerAuth], args.days)?;
    write(&dir.join("tls.crt"), &crt, false)?;
    write(&dir.join("tls.key"), &key, true)?;
    write(&dir.join("apiservice-cabundle.yaml"), &cabundle_patch(&ca_pem), false)?;
    println!("wrote {}: serving certificate for {}", dir.display(), names.join(", "));

    if args.etcd {
        let dir = args.config_dir.join(ETCD_DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (_, ca) = load_or_create_ca(&dir, "etcd-ca", "backup-etcd-ca", args.ca_days, args.new_ca)?;
        let names =
            etcd_dns_names(&args.etcd_statefulset, &args.etcd_service, ns, &args.cluster_domain, args.etcd_replicas);
        let both = [ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        for (file, cn, sans, usages) in [
            ("etcd-server", args.etcd_statefulset.as_str(), names.as_slice(), &both[..]),
            ("etcd-peer", args.etcd_statefulset.as_str(), names.as_slice(), &both[..]),
            ("etcd-client", svc.as_str(), &[][..], &[ExtendedKeyUsagePurpose::ClientAuth][..]),
        ] {
            let (crt, key) = leaf(&ca, cn, sans, usages, args.days)?;
            write(&dir.join(format!("{file}.crt")), &crt, false)?;
            write(&dir.join(format!("{file}.key")), &key, true)?;
        }
        println!(
            "wrote {}: etcd server, peer and client certificates for {} members",
            dir.display(),
            args.etcd_replicas
        );
    }
    Ok(())
}

/// The names kube-apiserver and in-cluster clients use for the Service.
fn service_dns_names(svc: &str, ns: &str, domain: &str) -> Vec<String> {
    vec![format!("{svc}.{ns}.svc"), format!("{svc}.{ns}.svc.{domain}"), format!("{svc}.{ns}"), svc.to_string()]
}

/// Every member's stable name (for peer URLs, client URLs and etcd's SAN check of peers), the headless Service's
/// wildcard, and loopback (etcdctl inside the pod).
fn etcd_dns_names(sts: &str, svc: &str, ns: &str, domain: &str, replicas: u32) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..replicas {
        names.push(format!("{sts}-{i}.{svc}.{ns}.svc"));
        names.push(format!("{sts}-{i}.{svc}.{ns}.svc.{domain}"));
    }
    names.push(format!("*.{svc}.{ns}.svc"));
    names.push(format!("*.{svc}.{ns}.svc.{domain}"));
    names.push(format!("{svc}.{ns}.svc"));
    names.push("localhost".into());
    names.push("127.0.0.1".into());
    names
}

/// `<name>.crt`/`<name>.key` in `dir` if both exist (and `!replace`), else a new self-signed CA written there.
fn load_or_create_ca(
    dir: &Path,
    name: &str,
    cn: &str,
    days: i64,
    replace: bool,
) -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
    let (crt_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    if !replace && crt_path.exists() && key_path.exists() {
        let crt = std::fs::read_to_string(&crt_path).with_context(|| format!("reading {}", crt_path.display()))?;
        let key = std::fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key).with_context(|| format!("parsing {}", key_path.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&crt, key).with_context(|| format!("parsing {}", crt_path.display()))?;
        println!("reusing the CA in {} (--new-ca replaces it)", crt_path.display());
        return Ok((crt, issuer));
    }
    let key = KeyPair::generate().context("generating a key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, days)?;
    let cert = params.self_signed(&key).context("self-signing the CA")?;
    let crt = cert.pem();
    write(&crt_path, &crt, false)?;
    write(&key_path, &key.serialize_pem(), true)?;
    Ok((crt, Issuer::new(params, key)))
}

/// A certificate for `sans` signed by `ca`, and its key, in PEM.
fn leaf(
    ca: &Issuer<'_, KeyPair>,
    cn: &str,
    sans: &[String],
    usages: &[ExtendedKeyUsagePurpose],
    days: i64,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate().context("generating a key")?;
    let mut params = CertificateParams::new(sans.to_vec()).context("certificate names")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, days)?;
    let cert = params.signed_by(&key, ca).with_context(|| format!("signing the certificate of {cn}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Valid from yesterday (clock skew) to `days` from today, UTC.
fn set_validity(params: &mut CertificateParams, days: i64) -> anyhow::Result<()> {
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let ymd = |d: jiff::civil::Date| rcgen::date_time_ymd(d.year().into(), d.month() as u8, d.day() as u8);
    params.not_before = ymd(today.checked_sub(jiff::Span::new().days(1)).context("date")?);
    params.not_after = ymd(today.checked_add(jiff::Span::new().days(days)).context("--days out of range")?);
    Ok(())
}

/// A strategic-merge patch setting the APIService's caBundle.
fn cabundle_patch(ca_pem: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "# Generated by backup-apiserver-certs (hack/gen-certs.sh); not committed. The CA of the serving certificate\n\
         # in Secret backup-apiserver-tls, which kube-apiserver trusts for this APIService.\n\
         apiVersion: apiregistration.k8s.io/v1\n\
         kind: APIService\n\
         metadata:\n  name: {APISERVICE}\n\
         spec:\n  caBundle: {b64}\n"
    )
}

/// Write `contents` atomically; private keys owner-only.
fn write(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all().ok();
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
