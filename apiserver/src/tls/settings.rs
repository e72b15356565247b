//! The TLS flags k8s.io/apiserver's secure serving takes, parsed as upstream parses them (component-base's
//! `cli/flag`): `--tls-min-version`, `--tls-cipher-suites` (Go's names) and `--tls-sni-cert-key`. The names Go knows
//! and rustls does not implement (TLS 1.0 and 1.1, CBC, RC4, 3DES, RSA key exchange) are accepted, so that a
//! deployment written for a Go server starts, and reported at start as not offered ([`TlsSettings::warnings`]).

use std::path::PathBuf;

use rustls::CipherSuite;

/// `--tls-min-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

/// Upstream's spellings: `VersionTLS10` … `VersionTLS13`.
pub fn parse_tls_version(s: &str) -> Result<TlsVersion, String> {
    match s.trim() {
        "VersionTLS10" => Ok(TlsVersion::Tls10),
        "VersionTLS11" => Ok(TlsVersion::Tls11),
        "VersionTLS12" => Ok(TlsVersion::Tls12),
        "VersionTLS13" => Ok(TlsVersion::Tls13),
        other => Err(format!(
            "unknown tls version {other:?}; possible values: VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13"
        )),
    }
}

/// One name of `--tls-cipher-suites`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CipherSuiteName {
    /// A TLS 1.2 suite rustls implements.
    Tls12(CipherSuite),
    /// A TLS 1.3 suite: accepted and without effect, as in Go, where TLS 1.3's suites are not configurable (all
    /// three are always offered).
    Tls13(String),
    /// A suite Go implements and rustls does not (CBC, RC4, 3DES, RSA key exchange): never offered.
    NotImplemented(String),
}

/// Go's names (crypto/tls), with the `_SHA256`-less ChaCha20 aliases upstream keeps; an unknown name is an error
/// with upstream's message.
pub fn parse_cipher_suite(s: &str) -> Result<CipherSuiteName, String> {
    use CipherSuite::*;
    let name = s.trim();
    let tls12 = match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            return Ok(CipherSuiteName::Tls13(name.to_string()));
        }
        "TLS_RSA_WITH_RC4_128_SHA"
        | "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA256"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
        | "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256" => return Ok(CipherSuiteName::NotImplemented(name.to_string())),
        _ => return Err(format!("Cipher suite {name} not supported or doesn't exist")),
    };
    Ok(CipherSuiteName::Tls12(tls12))
}

/// One `--tls-sni-cert-key`: `cert,key` or `cert,key:name1,name2` (names may start with `*.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedCertKey {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The names this certificate serves; empty: the names in the certificate (see [`super::certs`]).
    pub names: Vec<String>,
}

/// Upstream's `NamedCertKey.Set`, with its messages.
pub fn parse_named_cert_key(s: &str) -> Result<NamedCertKey, String> {
    let (files, names) = match s.split_once(':') {
        Some((files, names)) => {
            let names = names.trim();
            if names.is_empty() {
                return Err("empty names list is not allowed".into());
            }
            (files.trim(), names.split(',').map(|n| n.trim().to_string()).collect())
        }
        None => (s.trim(), Vec::new()),
    };
    let Some((cert, key)) = files.split_once(',').filter(|(_, key)| !key.contains(',')) else {
        return Err("expected comma separated certificate and key file paths".into());
    };
    Ok(NamedCertKey { cert_file: cert.trim().into(), key_file: key.trim().into(), names })
}

/// The protocol versions and TLS 1.2 cipher suites the server offers.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `--tls-min-version` (default TLS 1.2, upstream's default too).
    pub min_version: Option<TlsVersion>,
    /// `--tls-cipher-suites` (empty: every suite rustls implements).
    pub cipher_suites: Vec<CipherSuiteName>,
}

impl TlsSettings {
    /// Whether TLS 1.2 is offered.
    pub fn tls12(&self) -> bool {
        self.min_version.is_none_or(|v| v <= TlsVersion::Tls12) && self.allows_some_tls12_suite()
    }

    /// Whether `suite` may be negotiated.
    pub fn allows(&self, suite: &rustls::SupportedCipherSuite) -> bool {
        match suite.version().version {
            rustls::ProtocolVersion::TLSv1_3 => true,
            _ => self.cipher_suites.is_empty() || self.cipher_suites.contains(&CipherSuiteName::Tls12(suite.suite())),
        }
    }

    fn allows_some_tls12_suite(&self) -> bool {
        self.cipher_suites.is_empty() || self.cipher_suites.iter().any(|s| matches!(s, CipherSuiteName::Tls12(_)))
    }

    /// What the flags ask for that is not offered, one sentence each, for the log at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(v @ (TlsVersion::Tls10 | TlsVersion::Tls11)) = self.min_version {
            warnings.push(format!(
                "--tls-min-version={}: TLS 1.0 and 1.1 are not implemented; the minimum offered is TLS 1.2",
                if v == TlsVersion::Tls10 { "VersionTLS10" } else { "VersionTLS11" }
            ));
        }
        let missing: Vec<&str> = self
            .cipher_suites
            .iter()
            .filter_map(|s| match s {
                CipherSuiteName::NotImplemented(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            warnings.push(format!("--tls-cipher-suites: not implemented, so not offered: {}", missing.join(", ")));
        }
        if !self.allows_some_tls12_suite() && self.min_version.is_none_or(|v| v <= TlsVersion::Tls12) {
            warnings
                .push("--tls-cipher-suites names no TLS 1.2 suite that is implemented: only TLS 1.3 is offered".into());
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_tls_version("VersionTLS13"), Ok(TlsVersion::Tls13));
        assert_eq!(parse_tls_version(" VersionTLS10"), Ok(TlsVersion::Tls10));
        assert!(parse_tls_version("TLS1.2").unwrap_err().contains("possible values"));
    }

    #[test]
    fn cipher_suite_names() {
        use CipherSuite::*;
        let tls12 = |s| parse_cipher_suite(s).unwrap();
        assert_eq!(
            tls12("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"),
            CipherSuiteName::Tls12(TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        );
        assert_eq!(tls12("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"), tls12("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"));
        assert!(matches!(tls12("TLS_AES_256_GCM_SHA384"), CipherSuiteName::Tls13(_)));
        assert!(matches!(tls12("TLS_RSA_WITH_AES_128_CBC_SHA"), CipherSuiteName::NotImplemented(_)));
        assert_eq!(parse_cipher_suite("TLS_FOO").unwrap_err(), "Cipher suite TLS_FOO not supported or doesn't exist");
    }

    #[test]
    fn sni_cert_keys() {
        let parsed = parse_named_cert_key("foo.crt, foo.key:*.foo.com, foo.com").unwrap();
        assert_eq!(parsed.cert_file, PathBuf::from("foo.crt"));
        assert_eq!(parsed.key_file, PathBuf::from("foo.key"));
        assert_eq!(parsed.names, ["*.foo.com", "foo.com"]);
        assert!(parse_named_cert_key("a.crt,a.key").unwrap().names.is_empty());
        assert_eq!(parse_named_cert_key("a.crt,a.key:").unwrap_err(), "empty names list is not allowed");
        for wrong in ["a.crt", "a.crt,a.key,b", "a.crt:x.com"] {
            assert_eq!(
                parse_named_cert_key(wrong).unwrap_err(),
                "expected comma separated certificate and key file paths",
                "{wrong}"
            );
        }
    }

    #[test]
    fn what_is_offered() {
        let all = TlsSettings::default();
        assert!(all.tls12() && all.warnings().is_empty());
        let old = TlsSettings { min_version: Some(TlsVersion::Tls10), ..Default::default() };
        assert!(old.tls12());
        assert!(old.warnings()[0].contains("minimum offered is TLS 1.2"));
        let tls13 = TlsSettings { min_version: Some(TlsVersion::Tls13), ..Default::default() };
        assert!(!tls13.tls12() && tls13.warnings().is_empty());
        let cbc_only = TlsSettings {
            cipher_suites: vec![parse_cipher_suite("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA").unwrap()],
            ..Default::default()
        };
        assert!(!cbc_only.tls12());
        let warnings = cbc_only.warnings().join("\n");
        assert!(warnings.contains("not offered: TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"), "{warnings}");
        assert!(warnings.contains("only TLS 1.3 is offered"), "{warnings}");
    }
}
