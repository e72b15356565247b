//! Encryption at rest: the payload (the compressed records) sealed with ChaCha20-Poly1305 in the STREAM
//! construction (`aead-stream`'s big-endian 32-bit counter), in chunks of [`CHUNK`] bytes; the key's id and the
//! nonce prefix in the header, and the header itself authenticated with the same key (its tag follows the JSON in
//! the header block).
//!
//! API → controller → backup file → **encryption (this file)** → destination.
//!
//! Keys are 32 random bytes in a file (`head -c 32 /dev/urandom > key`). A location encrypts new backups with its
//! `keyFile` and reads older ones with any of its `previousKeyFiles`: a key is found by its id (the first 8 bytes
//! of SHA-256 over a label and the key, hex), so keys rotate without re-encrypting anything. STREAM authenticates
//! every chunk, their order and the last one (a file cut at a chunk boundary fails), and the header's tag covers
//! every header byte: a flipped byte anywhere fails.

use std::path::{Path, PathBuf};

use aead_stream::{DecryptorBE32, EncryptorBE32};
use anyhow::{Context, bail, ensure};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Plaintext bytes per sealed chunk; each is stored with a 16-byte tag.
pub const CHUNK: usize = 64 << 10;
pub const TAG: usize = 16;
/// STREAM's nonce prefix for a 12-byte nonce and a 32-bit counter and last-chunk flag.
const PREFIX: usize = 7;
pub const ALGORITHM: &str = "chacha20poly1305-stream-be32";

/// What the header says about a payload's encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sealing {
    pub algorithm: String,
    pub key_id: String,
    /// The STREAM nonce prefix, hex.
    pub nonce: String,
    pub chunk_size: u32,
}

/// One key.
#[derive(Clone)]
pub struct Key {
    pub id: String,
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Key {
    /// A key from its 32 bytes.
    pub fn new(bytes: &[u8]) -> anyhow::Result<Self> {
        ensure!(bytes.len() == 32, "an encryption key is 32 bytes (head -c 32 /dev/urandom), not {}", bytes.len());
        let digest = Sha256::new().chain_update(b"backup.extend-k8s.io key id\0").chain_update(bytes).finalize();
        let cipher = ChaCha20Poly1305::new_from_slice(bytes).map_err(|_| anyhow::anyhow!("invalid key length"))?;
        Ok(Self { id: hex::encode(&digest[..8]), cipher })
    }

    fn load(file: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(file).with_context(|| format!("reading key file {}", file.display()))?;
        Self::new(&bytes).with_context(|| format!("key file {}", file.display()))
    }

    fn header_nonce(prefix: &[u8; PREFIX]) -> Nonce {
        // STREAM's nonces end in a 0 or 1 flag byte: 2 is never one of them.
        let mut nonce = [0xff_u8; 12];
        nonce[..PREFIX].copy_from_slice(prefix);
        nonce[11] = 2;
        Nonce::from(nonce)
    }

    fn header_tag(&self, prefix: &[u8; PREFIX], header: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.cipher
            .encrypt(&Self::header_nonce(prefix), Payload { msg: b"", aad: header })
            .map_err(|_| anyhow::anyhow!("sealing the header"))
    }
}

/// A location's keys: the current one, and earlier ones still read.
#[derive(Debug, Clone)]
pub struct Keys {
    pub current: Key,
    pub previous: Vec<Key>,
}

impl Keys {
    pub fn load(current: &Path, previous: &[PathBuf]) -> anyhow::Result<Self> {
        Ok(Self {
            current: Key::load(current)?,
            previous: previous.iter().map(|p| Key::load(p)).collect::<Result<_, _>>()?,
        })
    }

    /// The key with id `id`, or a message saying which the location has.
    pub fn find(&self, id: &str) -> anyhow::Result<&Key> {
        std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == id).with_context(|| {
            let ids: Vec<&str> = std::iter::once(&self.current).chain(&self.previous).map(|k| k.id.as_str()).collect();
            format!(
                "the backup is encrypted with key {id}, which is not one of this location's keys ({}): add its key \
                 file to the location's encryption.previousKeyFiles",
                ids.join(", ")
            )
        })
    }
}

/// Seals a payload chunk by chunk.
pub struct Sealer {
    key: Key,
    prefix: [u8; PREFIX],
    stream: EncryptorBE32<ChaCha20Poly1305>,
    pending: Vec<u8>,
}

impl Sealer {
    pub fn new(key: &Key) -> anyhow::Result<Self> {
        let mut prefix = [0u8; PREFIX];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut prefix)
            .map_err(|_| anyhow::anyhow!("no random numbers for a nonce"))?;
        let stream = EncryptorBE32::from_aead(key.cipher.clone(), (&prefix).into());
        Ok(Self { key: key.clone(), prefix, stream, pending: Vec::with_capacity(CHUNK * 2) })
    }

    /// Takes plaintext; appends the sealed chunks it completes to `out`. The last chunk waits for [`Sealer::finish`].
    pub fn push(&mut self, plain: &[u8], out: &mut Vec<u8>) -> anyhow::Result<()> {
        self.pending.extend_from_slice(plain);
        let mut start = 0;
        // A chunk is sealed once a byte follows it: the last one (even empty) is sealed as last.
        while self.pending.len() - start > CHUNK {
            let mut buf = self.pending[start..start + CHUNK].to_vec();
            self.stream.encrypt_next_in_place(b"", &mut buf).map_err(|_| anyhow::anyhow!("sealing a chunk"))?;
            out.extend_from_slice(&buf);
            start += CHUNK;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// Seals the last chunk into `out`; returns what the header says.
    pub fn finish(self, out: &mut Vec<u8>) -> anyhow::Result<Sealing> {
        let mut buf = self.pending;
        self.stream.encrypt_last_in_place(b"", &mut buf).map_err(|_| anyhow::anyhow!("sealing the last chunk"))?;
        out.extend_from_slice(&buf);
        Ok(Sealing {
            algorithm: ALGORITHM.into(),
            key_id: self.key.id.clone(),
            nonce: hex::encode(self.prefix),
            chunk_size: CHUNK as u32,
        })
    }

    /// The 16-byte tag of a header's bytes (magic, length and JSON), stored right after them.
    pub fn tag_header(key: &Key, sealing: &Sealing, header: &[u8]) -> anyhow::Result<Vec<u8>> {
        key.header_tag(&prefix_of(sealing)?, header)
    }
}

fn prefix_of(sealing: &Sealing) -> anyhow::Result<[u8; PREFIX]> {
    let bytes = hex::decode(&sealing.nonce).context("corrupt backup: the header's nonce is not hex")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("corrupt backup: the header's nonce is not {PREFIX} bytes"))
}

/// Opens a sealed payload chunk by chunk.
pub struct Opener {
    stream: Option<DecryptorBE32<ChaCha20Poly1305>>,
    /// Sealed bytes per chunk.
    pub sealed_chunk: usize,
}

impl Opener {
    /// Checks the header's `tag` (over `header`, its magic, length and JSON) with the key it names.
    pub fn new(keys: Option<&Keys>, sealing: &Sealing, header: &[u8], tag: &[u8]) -> anyhow::Result<Self> {
        if sealing.algorithm != ALGORITHM {
            bail!("the backup is encrypted with {:?}, which this controller does not know", sealing.algorithm);
        }
        let Some(keys) = keys else {
            bail!(
                "the backup is encrypted (key {}), but its location has no encryption keys: set the location's \
                 encryption.keyFile (or previousKeyFiles) to that key's file",
                sealing.key_id
            );
        };
        let key = keys.find(&sealing.key_id)?;
        let prefix = prefix_of(sealing)?;
        if key.header_tag(&prefix, header)? != tag {
            bail!("corrupt backup: the header's authentication tag does not match (key {})", key.id);
        }
        ensure!(sealing.chunk_size as usize == CHUNK, "unsupported chunk size {}", sealing.chunk_size);
        let stream = DecryptorBE32::from_aead(key.cipher.clone(), (&prefix).into());
        Ok(Self { stream: Some(stream), sealed_chunk: CHUNK + TAG })
    }

    /// Opens one sealed chunk in place (`last`: the payload's final one).
    pub fn open(&mut self, chunk: &mut Vec<u8>, last: bool) -> anyhow::Result<()> {
        let fail = || anyhow::anyhow!("corrupt backup: an encrypted chunk does not authenticate (altered or cut)");
        match last {
            false => self
                .stream
                .as_mut()
                .context("the payload continues past its last chunk")?
                .decrypt_next_in_place(b"", chunk)
                .map_err(|_| fail()),
            true => self
                .stream
                .take()
                .context("the payload continues past its last chunk")?
                .decrypt_last_in_place(b"", chunk)
                .map_err(|_| fail()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_rotate() {
        let old = Key::new(&[1; 32]).unwrap();
        let new = Key::new(&[2; 32]).unwrap();
        assert_ne!(old.id, new.id);
        assert!(Key::new(&[0; 31]).unwrap_err().to_string().contains("32 bytes"));
        for size in [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let plain: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
            let mut sealer = Sealer::new(&old).unwrap();
            let mut sealed = Vec::new();
            for piece in plain.chunks(10_000) {
                sealer.push(piece, &mut sealed).unwrap();
            }
            let sealing = sealer.finish(&mut sealed).unwrap();
            let tag = Sealer::tag_header(&old, &sealing, b"{json}").unwrap();
            assert_eq!(tag.len(), TAG);
            let open = |keys: Option<&Keys>, sealed: &[u8], json: &[u8]| -> anyhow::Result<Vec<u8>> {
                let mut opener = Opener::new(keys, &sealing, json, &tag)?;
                let mut out = Vec::new();
                let chunks: Vec<&[u8]> = sealed.chunks(opener.sealed_chunk).collect();
                for (i, c) in chunks.iter().enumerate() {
                    let mut buf = c.to_vec();
                    opener.open(&mut buf, i + 1 == chunks.len())?;
                    out.extend_from_slice(&buf);
                }
                Ok(out)
            };
            let rotated = Keys { current: new.clone(), previous: vec![old.clone()] };
            assert_eq!(open(Some(&rotated), &sealed, b"{json}").unwrap(), plain, "{size}");
            let err = open(Some(&Keys { current: new.clone(), previous: vec![] }), &sealed, b"{json}").unwrap_err();
            assert!(err.to_string().contains("not one of this location's keys"), "{err}");
            let err = open(None, &sealed, b"{json}").unwrap_err();
            assert!(err.to_string().contains("has no encryption keys"), "{err}");
            assert!(open(Some(&rotated), &sealed, b"{jsoN}").unwrap_err().to_string().contains("header"));
            for at in [0, sealed.len() / 2, sealed.len() - 1] {
                let mut flipped = sealed.clone();
                flipped[at] ^= 0x10;
                assert!(open(Some(&rotated), &flipped, b"{json}").is_err(), "{size} {at}");
            }
            if size > CHUNK {
                // Cut at a chunk boundary: the new last chunk was not sealed as last.
                assert!(open(Some(&rotated), &sealed[..CHUNK + TAG], b"{json}").is_err());
            }
        }
    }
}
