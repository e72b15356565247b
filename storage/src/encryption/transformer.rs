//! One resource's providers, in the order of its EncryptionConfiguration entry (upstream's `prefixTransformers`):
//! the first provider's first key writes; a value is read by the first provider whose prefix it carries, then by
//! that provider's key whose name follows. A value read by any other provider or key is **stale**: an update that
//! changes nothing writes it again anyway, so that rewriting every object moves it to the current key.
//!
//! encryption storage → **transformer** → ciphers.

use std::sync::atomic::{AtomicU64, Ordering};

use super::ciphers::{Cipher, CipherError};

/// What every encrypted value starts with; the identity provider refuses to read such a value.
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

/// A provider's kind, as named in the EncryptionConfiguration and in the stored prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Identity,
    AesCbc,
    AesGcm,
    Secretbox,
}

impl ProviderKind {
    /// The configuration's name (`aescbc`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::AesCbc => "aescbc",
            Self::AesGcm => "aesgcm",
            Self::Secretbox => "secretbox",
        }
    }

    /// What values it wrote start with (`k8s:enc:aescbc:v1:`); empty for identity.
    pub fn prefix(self) -> String {
        match self {
            Self::Identity => String::new(),
            kind => format!("k8s:enc:{}:v1:", kind.name()),
        }
    }
}

/// One named key of a provider.
pub struct NamedKey {
    pub name: String,
    pub cipher: Cipher,
}

/// How often a provider read or wrote, successfully or not (upstream's
/// `apiserver_storage_transformation_operations_total`).
#[derive(Debug, Default)]
pub struct Counts {
    pub from_storage_ok: AtomicU64,
    pub from_storage_failed: AtomicU64,
    pub to_storage_ok: AtomicU64,
    pub to_storage_failed: AtomicU64,
}

/// One provider: its kind, its keys (none for identity) and its counts.
pub struct Provider {
    pub kind: ProviderKind,
    prefix: Vec<u8>,
    keys: Vec<(Vec<u8>, Cipher)>,
    pub counts: Counts,
}

impl Provider {
    /// A provider with its keys in order (the first writes); identity takes none.
    pub fn new(kind: ProviderKind, keys: Vec<NamedKey>) -> Self {
        let keys = keys.into_iter().map(|k| (format!("{}:", k.name).into_bytes(), k.cipher)).collect();
        Self { kind, prefix: kind.prefix().into_bytes(), keys, counts: Counts::default() }
    }

    /// What its values start with, as the metrics label it (`identity` for the identity provider).
    pub fn label(&self) -> String {
        match self.kind {
            ProviderKind::Identity => "identity".into(),
            kind => kind.prefix(),
        }
    }
}

/// The kind and key names; never the keys.
impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.keys.iter().map(|(name, _)| key_name(name)).collect();
        f.debug_struct("Provider").field("kind", &self.kind).field("keys", &names).finish()
    }
}

/// Why a stored value could not be read or a value written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// No provider's prefix matches (an encrypted value and no provider for it, or a plain value without the
    /// identity provider).
    #[error(
        "no matching prefix found: the value was written by a provider this server's encryption configuration does not list"
    )]
    NoProvider,
    /// The provider matched, but none of its keys has the value's key name.
    #[error("no matching key was found for the provided {provider} transformer (the value names key {key:?})")]
    NoKey { provider: &'static str, key: String },
    /// The key matched, but the value did not decrypt.
    #[error("{provider} key {key:?}: {source}")]
    Cipher { provider: &'static str, key: String, source: CipherError },
    /// The identity provider was asked to read an encrypted value (and no later provider could).
    #[error("identity transformer tried to read encrypted data")]
    EncryptedForIdentity,
}

/// A value as read from storage.
#[derive(Debug, PartialEq, Eq)]
pub struct Read {
    pub value: Vec<u8>,
    /// Not written by the provider and key that write now.
    pub stale: bool,
}

/// The providers of one resource.
#[derive(Debug)]
pub struct Transformer {
    providers: Vec<Provider>,
}

impl Transformer {
    /// `providers` in the configuration's order; at least one.
    pub fn new(providers: Vec<Provider>) -> Option<Self> {
        (!providers.is_empty()).then_some(Self { providers })
    }

    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The value as stored: sealed by the first provider's first key after its prefix and the key's name.
    pub fn to_storage(&self, value: &[u8], context: &[u8]) -> Result<Vec<u8>, TransformError> {
        let Some(provider) = self.providers.first() else { return Ok(value.to_vec()) };
        let result = match provider.keys.first() {
            None => Ok(value.to_vec()),
            Some((name, cipher)) => {
                cipher.seal(value, context).map(|sealed| [provider.prefix.as_slice(), name, &sealed].concat()).map_err(
                    |source| TransformError::Cipher { provider: provider.kind.name(), key: key_name(name), source },
                )
            }
        };
        let counter = if result.is_ok() { &provider.counts.to_storage_ok } else { &provider.counts.to_storage_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// The value a stored one holds.
    pub fn from_storage(&self, stored: &[u8], context: &[u8]) -> Result<Read, TransformError> {
        let mut error = TransformError::NoProvider;
        for (i, provider) in self.providers.iter().enumerate() {
            let Some(rest) = stored.strip_prefix(provider.prefix.as_slice()) else { continue };
            let result = read(provider, rest, context);
            let counter =
                if result.is_ok() { &provider.counts.from_storage_ok } else { &provider.counts.from_storage_failed };
            counter.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok((value, key_index)) => return Ok(Read { value, stale: i != 0 || key_index != 0 }),
                // As upstream: after an identity provider listed first (to decrypt while writing plain values
                // again), the providers after it read what it refuses.
                Err(e @ TransformError::EncryptedForIdentity) => error = e,
                Err(e) => return Err(e),
            }
        }
        Err(error)
    }

    /// Whether a stored value would be read as stale, decided by its prefix and key name alone.
    pub fn is_stale(&self, stored: &[u8]) -> bool {
        for (i, provider) in self.providers.iter().enumerate() {
            let Some(rest) = stored.strip_prefix(provider.prefix.as_slice()) else { continue };
            if provider.kind == ProviderKind::Identity {
                if rest.starts_with(ENCRYPTED_PREFIX) {
                    continue;
                }
                return i != 0;
            }
            let first_key = provider.keys.first().is_some_and(|(name, _)| rest.starts_with(name));
            return i != 0 || !first_key;
        }
        // Unreadable: writing it again is what an update of it would want, if it could read it.
        true
    }
}

/// Read `rest` (the value after the provider's prefix) with the key it names: the value and the key's index.
fn read(provider: &Provider, rest: &[u8], context: &[u8]) -> Result<(Vec<u8>, usize), TransformError> {
    if provider.kind == ProviderKind::Identity {
        if rest.starts_with(ENCRYPTED_PREFIX) {
            return Err(TransformError::EncryptedForIdentity);
        }
        return Ok((rest.to_vec(), 0));
    }
    for (index, (name, cipher)) in provider.keys.iter().enumerate() {
        if let Some(sealed) = rest.strip_prefix(name.as_slice()) {
            return cipher.open(sealed, context).map(|value| (value, index)).map_err(|source| TransformError::Cipher {
                provider: provider.kind.name(),
                key: key_name(name),
                source,
            });
        }
    }
    let named = rest.iter().take(64).position(|&b| b == b':').map_or_else(String::new, |end| key_name(&rest[..=end]));
    Err(TransformError::NoKey { provider: provider.kind.name(), key: named })
}

/// A key's name from its stored form (`name:`).
fn key_name(stored: &[u8]) -> String {
    String::from_utf8_lossy(stored.strip_suffix(b":").unwrap_or(stored)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::ciphers::{AesKey, GcmKey};
    use super::*;

    fn gcm(name: &str, byte: u8) -> NamedKey {
        NamedKey { name: name.into(), cipher: Cipher::AesGcm(GcmKey::new(&[byte; 32]).unwrap()) }
    }

    fn cbc(name: &str, byte: u8) -> NamedKey {
        NamedKey { name: name.into(), cipher: Cipher::AesCbc(AesKey::new(&[byte; 32]).unwrap()) }
    }

    fn transformer(providers: Vec<Provider>) -> Transformer {
        Transformer::new(providers).unwrap()
    }

    #[test]
    fn writes_with_the_first_key_of_the_first_provider_after_its_prefix() {
        let t = transformer(vec![
            Provider::new(ProviderKind::AesGcm, vec![gcm("key2", 2), gcm("key1", 1)]),
            Provider::new(ProviderKind::Identity, vec![]),
        ]);
        let stored = t.to_storage(b"{}", b"/registry/a").unwrap();
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key2:"), "{:?}", String::from_utf8_lossy(&stored));
        assert_eq!(t.from_storage(&stored, b"/registry/a").unwrap(), Read { value: b"{}".to_vec(), stale: false });
        assert!(!t.is_stale(&stored));
    }

    #[test]
    fn older_keys_later_providers_and_plain_values_read_as_stale() {
        let old = transformer(vec![Provider::new(ProviderKind::AesGcm, vec![gcm("key1", 1)])]);
        let by_key1 = old.to_storage(b"v1", b"k").unwrap();
        let cbc_only = transformer(vec![Provider::new(ProviderKind::AesCbc, vec![cbc("c", 3)])]);
        let by_cbc = cbc_only.to_storage(b"v2", b"k").unwrap();
        let now = transformer(vec![
            Provider::new(ProviderKind::AesGcm, vec![gcm("key2", 2), gcm("key1", 1)]),
            Provider::new(ProviderKind::AesCbc, vec![cbc("c", 3)]),
            Provider::new(ProviderKind::Identity, vec![]),
        ]);
        for (stored, value) in [(&by_key1, b"v1"), (&by_cbc, b"v2"), (&b"v3".to_vec(), b"v3")] {
            assert_eq!(now.from_storage(stored, b"k").unwrap(), Read { value: value.to_vec(), stale: true });
            assert!(now.is_stale(stored));
        }
    }

    #[test]
    fn identity_first_writes_plain_and_still_reads_what_was_encrypted() {
        let old = transformer(vec![Provider::new(ProviderKind::AesCbc, vec![cbc("c", 3)])]);
        let encrypted = old.to_storage(b"secret", b"k").unwrap();
        let t = transformer(vec![
            Provider::new(ProviderKind::Identity, vec![]),
            Provider::new(ProviderKind::AesCbc, vec![cbc("c", 3)]),
        ]);
        assert_eq!(t.to_storage(b"plain", b"k").unwrap(), b"plain");
        assert_eq!(t.from_storage(b"plain", b"k").unwrap(), Read { value: b"plain".to_vec(), stale: false });
        assert_eq!(t.from_storage(&encrypted, b"k").unwrap(), Read { value: b"secret".to_vec(), stale: true });
        assert!(t.is_stale(&encrypted) && !t.is_stale(b"plain"));
        let identity_only = transformer(vec![Provider::new(ProviderKind::Identity, vec![])]);
        assert_eq!(identity_only.from_storage(&encrypted, b"k"), Err(TransformError::EncryptedForIdentity));
    }

    #[test]
    fn unreadable_values_say_why() {
        let t = transformer(vec![Provider::new(ProviderKind::AesGcm, vec![gcm("key1", 1)])]);
        assert_eq!(t.from_storage(b"{\"plain\":true}", b"k"), Err(TransformError::NoProvider));
        let other = transformer(vec![Provider::new(ProviderKind::AesGcm, vec![gcm("gone", 9)])]);
        let stored = other.to_storage(b"v", b"k").unwrap();
        assert_eq!(
            t.from_storage(&stored, b"k"),
            Err(TransformError::NoKey { provider: "aesgcm", key: "gone".into() })
        );
        let same_name = transformer(vec![Provider::new(ProviderKind::AesGcm, vec![gcm("key1", 9)])]);
        let stored = same_name.to_storage(b"v", b"k").unwrap();
        let err = t.from_storage(&stored, b"k").unwrap_err();
        assert!(matches!(err, TransformError::Cipher { source: CipherError::Authentication, .. }), "{err}");
        assert_eq!(err.to_string(), "aesgcm key \"key1\": cipher: message authentication failed");
        let counts = &t.providers()[0].counts;
        assert_eq!(counts.from_storage_failed.load(Ordering::Relaxed), 2);
    }
}
