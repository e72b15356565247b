//! The three ciphers of upstream's EncryptionConfiguration, each writing exactly the bytes k8s.io/apiserver's
//! `storage/value/encrypt` transformers write (after the `k8s:enc:<provider>:v1:<key name>:` prefix), so that a
//! value written by either server reads in the other:
//!
//! - `aescbc`: a random 16-byte IV, then AES-CBC of the PKCS#7-padded value (not authenticated);
//! - `aesgcm`: a random 12-byte nonce, then AES-GCM of the value with its tag, the etcd key as authenticated data;
//! - `secretbox`: a random 24-byte nonce, then NaCl's secretbox (XSalsa20-Poly1305): the tag, then the ciphertext.
//!
//! encryption storage → **ciphers** (one key each).

use aes::{Aes128, Aes192, Aes256};
use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{
    BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, StreamCipher,
};
use poly1305::Poly1305;
use rand::RngCore;
use salsa20::XSalsa20;
use subtle::ConstantTimeEq;

const CBC_IV: usize = 16;
const GCM_NONCE: usize = 12;
const SECRETBOX_NONCE: usize = 24;
const SECRETBOX_TAG: usize = 16;
/// The bytes of a secretbox key (NaCl's only size).
pub const SECRETBOX_KEY: usize = 32;

/// Why a stored value did not decrypt (the messages are upstream's where upstream has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("the stored data was shorter than the required size")]
    TooShort,
    #[error("the stored data is not a multiple of the block size")]
    NotBlockMultiple,
    #[error("invalid PKCS7 data (empty or not padded)")]
    BadPadding,
    #[error("cipher: message authentication failed")]
    Authentication,
    #[error("output array was not large enough for encryption")]
    Encrypt,
}

/// One key of one provider, ready to seal and open values.
pub enum Cipher {
    AesCbc(AesKey),
    AesGcm(GcmKey),
    Secretbox([u8; SECRETBOX_KEY]),
}

/// An AES key of 16, 24 or 32 bytes (AES-128, -192, -256), as Go's `aes.NewCipher` takes.
pub enum AesKey {
    A128(Box<[u8; 16]>),
    A192(Box<[u8; 24]>),
    A256(Box<[u8; 32]>),
}

/// An AES-GCM key of any of AES's sizes, with a 12-byte nonce (Go's `cipher.NewGCM`).
pub enum GcmKey {
    A128(Box<AesGcm<Aes128, U12>>),
    A192(Box<AesGcm<Aes192, U12>>),
    A256(Box<AesGcm<Aes256, U12>>),
}

impl AesKey {
    /// `None` unless the key has 16, 24 or 32 bytes.
    pub fn new(key: &[u8]) -> Option<Self> {
        Some(match key.len() {
            16 => Self::A128(Box::new(key.try_into().ok()?)),
            24 => Self::A192(Box::new(key.try_into().ok()?)),
            32 => Self::A256(Box::new(key.try_into().ok()?)),
            _ => return None,
        })
    }
}

impl GcmKey {
    /// `None` unless the key has 16, 24 or 32 bytes.
    pub fn new(key: &[u8]) -> Option<Self> {
        Some(match key.len() {
            16 => Self::A128(Box::new(AesGcm::new_from_slice(key).ok()?)),
            24 => Self::A192(Box::new(AesGcm::new_from_slice(key).ok()?)),
            32 => Self::A256(Box::new(AesGcm::new_from_slice(key).ok()?)),
            _ => return None,
        })
    }
}

impl Cipher {
    /// `value` encrypted after a fresh random IV or nonce; `context` (the etcd key) is authenticated by AES-GCM.
    pub fn seal(&self, value: &[u8], context: &[u8]) -> Result<Vec<u8>, CipherError> {
        match self {
            Self::AesCbc(key) => {
                let iv = random::<CBC_IV>();
                let body = match key {
                    AesKey::A128(k) => cbc_encrypt::<Aes128>(k.as_slice(), &iv, value),
                    AesKey::A192(k) => cbc_encrypt::<Aes192>(k.as_slice(), &iv, value),
                    AesKey::A256(k) => cbc_encrypt::<Aes256>(k.as_slice(), &iv, value),
                }?;
                Ok([iv.as_slice(), &body].concat())
            }
            Self::AesGcm(key) => {
                let nonce = random::<GCM_NONCE>();
                let payload = Payload { msg: value, aad: context };
                let body = match key {
                    GcmKey::A128(k) => k.encrypt(&nonce.into(), payload),
                    GcmKey::A192(k) => k.encrypt(&nonce.into(), payload),
                    GcmKey::A256(k) => k.encrypt(&nonce.into(), payload),
                }
                .map_err(|_| CipherError::Encrypt)?;
                Ok([nonce.as_slice(), &body].concat())
            }
            Self::Secretbox(key) => {
                let nonce = random::<SECRETBOX_NONCE>();
                let mut out = vec![0; SECRETBOX_NONCE + SECRETBOX_TAG + value.len()];
                out[..SECRETBOX_NONCE].copy_from_slice(&nonce);
                let (tag, body) = out[SECRETBOX_NONCE..].split_at_mut(SECRETBOX_TAG);
                body.copy_from_slice(value);
                let mut stream = xsalsa20(key, &nonce);
                let mac = mac_key(&mut stream);
                stream.apply_keystream(body);
                tag.copy_from_slice(&Poly1305::new(&mac.into()).compute_unpadded(body));
                Ok(out)
            }
        }
    }

    /// The value `sealed` holds, if it was sealed with this key (and, for AES-GCM, this `context`).
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, CipherError> {
        match self {
            Self::AesCbc(key) => {
                if sealed.len() < CBC_IV {
                    return Err(CipherError::TooShort);
                }
                let (iv, body) = sealed.split_at(CBC_IV);
                if body.len() % CBC_IV != 0 {
                    return Err(CipherError::NotBlockMultiple);
                }
                match key {
                    AesKey::A128(k) => cbc_decrypt::<Aes128>(k.as_slice(), iv, body),
                    AesKey::A192(k) => cbc_decrypt::<Aes192>(k.as_slice(), iv, body),
                    AesKey::A256(k) => cbc_decrypt::<Aes256>(k.as_slice(), iv, body),
                }
            }
            Self::AesGcm(key) => {
                if sealed.len() < GCM_NONCE {
                    return Err(CipherError::TooShort);
                }
                let (nonce, body) = sealed.split_at(GCM_NONCE);
                let nonce: [u8; GCM_NONCE] = nonce.try_into().map_err(|_| CipherError::TooShort)?;
                let payload = Payload { msg: body, aad: context };
                match key {
                    GcmKey::A128(k) => k.decrypt(&nonce.into(), payload),
                    GcmKey::A192(k) => k.decrypt(&nonce.into(), payload),
                    GcmKey::A256(k) => k.decrypt(&nonce.into(), payload),
                }
                .map_err(|_| CipherError::Authentication)
            }
            Self::Secretbox(key) => {
                if sealed.len() < SECRETBOX_NONCE + SECRETBOX_TAG {
                    return Err(CipherError::TooShort);
                }
                let (nonce, rest) = sealed.split_at(SECRETBOX_NONCE);
                let (tag, body) = rest.split_at(SECRETBOX_TAG);
                let nonce: [u8; SECRETBOX_NONCE] = nonce.try_into().map_err(|_| CipherError::TooShort)?;
                let mut stream = xsalsa20(key, &nonce);
                let mac = mac_key(&mut stream);
                let expected = Poly1305::new(&mac.into()).compute_unpadded(body);
                if !bool::from(expected.as_slice().ct_eq(tag)) {
                    return Err(CipherError::Authentication);
                }
                let mut value = body.to_vec();
                stream.apply_keystream(&mut value);
                Ok(value)
            }
        }
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn cbc_encrypt<C: BlockCipherEncrypt>(key: &[u8], iv: &[u8; CBC_IV], value: &[u8]) -> Result<Vec<u8>, CipherError>
where
    cbc::Encryptor<C>: KeyIvInit + BlockModeEncrypt,
{
    let mode = cbc::Encryptor::<C>::new_from_slices(key, iv).map_err(|_| CipherError::Encrypt)?;
    Ok(mode.encrypt_padded_vec::<Pkcs7>(value))
}

fn cbc_decrypt<C: BlockCipherDecrypt>(key: &[u8], iv: &[u8], body: &[u8]) -> Result<Vec<u8>, CipherError>
where
    cbc::Decryptor<C>: KeyIvInit + BlockModeDecrypt,
{
    let mode = cbc::Decryptor::<C>::new_from_slices(key, iv).map_err(|_| CipherError::TooShort)?;
    mode.decrypt_padded_vec::<Pkcs7>(body).map_err(|_| CipherError::BadPadding)
}

/// XSalsa20 keyed for one secretbox.
fn xsalsa20(key: &[u8; SECRETBOX_KEY], nonce: &[u8; SECRETBOX_NONCE]) -> XSalsa20 {
    XSalsa20::new(key.into(), nonce.into())
}

/// The Poly1305 key of a secretbox: the stream's first 32 bytes (the message starts after them).
fn mac_key(stream: &mut XSalsa20) -> [u8; 32] {
    let mut key = [0; 32];
    stream.apply_keystream(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ciphers() -> Vec<(&'static str, Cipher)> {
        vec![
            ("aescbc-128", Cipher::AesCbc(AesKey::new(&[1; 16]).unwrap())),
            ("aescbc-192", Cipher::AesCbc(AesKey::new(&[2; 24]).unwrap())),
            ("aescbc-256", Cipher::AesCbc(AesKey::new(&[3; 32]).unwrap())),
            ("aesgcm-128", Cipher::AesGcm(GcmKey::new(&[4; 16]).unwrap())),
            ("aesgcm-192", Cipher::AesGcm(GcmKey::new(&[5; 24]).unwrap())),
            ("aesgcm-256", Cipher::AesGcm(GcmKey::new(&[6; 32]).unwrap())),
            ("secretbox", Cipher::Secretbox([7; 32])),
        ]
    }

    #[test]
    fn every_cipher_round_trips_values_of_every_length_with_fresh_randomness() {
        for (name, cipher) in ciphers() {
            for len in [0, 1, 15, 16, 17, 64, 1000] {
                let value: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let a = cipher.seal(&value, b"/registry/k").unwrap();
                let b = cipher.seal(&value, b"/registry/k").unwrap();
                assert_ne!(a, b, "{name}: a fresh IV or nonce per value");
                assert_eq!(cipher.open(&a, b"/registry/k").unwrap(), value, "{name} at {len}");
                // Eight bytes of the value nowhere in the output (shorter runs turn up in random bytes by chance).
                if len >= 8 {
                    assert!(!a.windows(8).any(|w| w == &value[..8]), "{name}: no plaintext");
                }
            }
        }
    }

    #[test]
    fn sizes_are_upstreams() {
        let value = [9u8; 20];
        let [cbc, gcm, secretbox] =
            [&ciphers()[0].1, &ciphers()[3].1, &ciphers()[6].1].map(|c| c.seal(&value, b"k").unwrap().len());
        assert_eq!(cbc, 16 + 32, "IV + two padded blocks");
        assert_eq!(gcm, 12 + 20 + 16, "nonce + ciphertext + tag");
        assert_eq!(secretbox, 24 + 16 + 20, "nonce + tag + ciphertext");
    }

    #[test]
    fn a_flipped_byte_or_another_context_fails_authentication() {
        for (name, cipher) in ciphers().into_iter().filter(|(n, _)| !n.starts_with("aescbc")) {
            let sealed = cipher.seal(b"{\"spec\":{}}", b"/registry/a").unwrap();
            for i in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[i] ^= 0x40;
                assert_eq!(cipher.open(&bad, b"/registry/a"), Err(CipherError::Authentication), "{name} byte {i}");
            }
            let other = cipher.open(&sealed, b"/registry/b");
            if name.starts_with("aesgcm") {
                assert_eq!(other, Err(CipherError::Authentication), "{name}: the key is authenticated");
            } else {
                assert!(other.is_ok(), "{name}: upstream's secretbox authenticates no context");
            }
        }
    }

    #[test]
    fn truncated_and_misshapen_values_are_errors_not_panics() {
        for (name, cipher) in ciphers() {
            let sealed = cipher.seal(b"some value", b"k").unwrap();
            for len in 0..sealed.len() {
                assert!(cipher.open(&sealed[..len], b"k").is_err(), "{name} cut at {len}");
            }
        }
        let cbc = &ciphers()[0].1;
        assert_eq!(cbc.open(&[0; 10], b""), Err(CipherError::TooShort));
        assert_eq!(cbc.open(&[0; 20], b""), Err(CipherError::NotBlockMultiple));
    }

    /// NaCl's secretbox vector (the one Go's `nacl/secretbox` tests): a value sealed elsewhere opens here.
    #[test]
    fn secretbox_opens_nacls_test_vector() {
        let hex = |s: &str| {
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect::<Vec<u8>>()
        };
        let key: [u8; 32] = hex("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389").try_into().unwrap();
        let nonce = hex("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37");
        let message = hex(concat!(
            "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffce5ecbaaf33bd751a1ac728d45e6c61296cdc3c01",
            "233561f41db66cce314adb310e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde048977eb48f59ffd",
            "4924ca1c60902e52f0a089bc76897040e082f937763848645e0705"
        ));
        let sealed = hex(concat!(
            "f3ffc7703f9400e52a7dfb4b3d3305d98e993b9f48681273c29650ba32fc76ce48332ea7164d96a4476fb8c531a1186ac0dfc17c",
            "98dce87b4da7f011ec48c97271d2c20f9b928fe2270d6fb863d51738b48eeee314a7cc8ab932164548e526ae90224368517acfea",
            "bd6bb3732bc0e9da99832b61ca01b6de56244a9e88d5f9b37973f622a43d14a6599b1f654cb45a74e355a5"
        ));
        let stored = [nonce, sealed].concat();
        assert_eq!(Cipher::Secretbox(key).open(&stored, b"").unwrap(), message);
    }

    #[test]
    fn keys_of_other_sizes_are_refused() {
        for len in [0, 8, 15, 17, 31, 33, 64] {
            assert!(AesKey::new(&vec![0; len]).is_none(), "{len}");
            assert!(GcmKey::new(&vec![0; len]).is_none(), "{len}");
        }
    }
}
