//! Throw-away certificate authorities and certificates (rcgen, ECDSA P-256), generated at test time: the cluster
//! CA, the front-proxy CA, serving and client certificates. Nothing here is ever written to the repository.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate authority.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, in PEM.
#[derive(Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A key pair for signing service-account tokens, in PEM (PKCS#8 private key, PKIX public key).
pub struct SigningKey {
    pub private_pem: String,
    pub public_pem: String,
}

impl Ca {
    /// A self-signed CA with common name `cn`.
    pub fn new(cn: &str) -> Self {
        let key = KeyPair::generate().expect("generate a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        Self { cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A client certificate for user `cn` in groups `orgs` (kube-apiserver's x509 authenticator: CN = user,
    /// O = groups).
    pub fn client(&self, cn: &str, orgs: &[&str]) -> CertKey {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A serving certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> CertKey {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("serving parameters");
        params.distinguished_name.push(DnType::CommonName, names.first().map_or("server", String::as_str));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> CertKey {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate().expect("generate a key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the certificate");
        CertKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

impl SigningKey {
    pub fn generate() -> Self {
        let key = KeyPair::generate().expect("generate a key");
        Self { private_pem: key.serialize_pem(), public_pem: key.public_key_pem() }
    }
}

/// Standard base64 of `text` (kubeconfig `*-data` fields, `caBundle`).
pub fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
