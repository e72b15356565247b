//! Encryption at rest over a real backend: what the backend holds, a value moved to another key, and key rotation
//! (an older key still reads, its values are stale until written again).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::sync::Arc;

use backup_storage::embedded::EmbeddedStorage;
use backup_storage::encryption::{
    Cipher, EncryptedStorage, GcmKey, NamedKey, Provider, ProviderKind, ResourceTransformer, Transformer,
};
use backup_storage::{Storage, StorageError};
use bytes::Bytes;

fn gcm(name: &str, byte: u8) -> NamedKey {
    NamedKey { name: name.into(), cipher: Cipher::AesGcm(GcmKey::new(&[byte; 32]).unwrap()) }
}

/// `/g/r/` of `backend` encrypted by `keys` (the first writes).
fn encrypted(backend: &Arc<dyn Storage>, keys: Vec<NamedKey>) -> EncryptedStorage {
    let transformer = Transformer::new(vec![Provider::new(ProviderKind::AesGcm, keys)]).unwrap();
    let resources = vec![ResourceTransformer { prefix: "/g/r/".into(), transformer: Arc::new(transformer) }];
    EncryptedStorage::new(backend.clone(), "/registry", resources)
}

const VALUE: &[u8] = br#"{"spec":{"database":"http://prometheus:9090","password":"hunter2"}}"#;

#[tokio::test]
async fn the_backend_holds_only_ciphertext_bound_to_its_key() {
    let backend: Arc<dyn Storage> = Arc::new(EmbeddedStorage::in_memory().unwrap());
    let s = encrypted(&backend, vec![gcm("key1", 1)]);
    let created = s.create("/g/r/ns/a", Bytes::from_static(VALUE)).await.unwrap();
    assert_eq!(created.value, VALUE, "the caller gets its value back");
    let raw = backend.get("/g/r/ns/a").await.unwrap().unwrap();
    assert!(raw.value.starts_with(b"k8s:enc:aesgcm:v1:key1:"), "{:?}", raw.value);
    assert!(!raw.value.windows(7).any(|w| w == b"hunter2"), "no plaintext in the backend");
    assert_eq!(s.get("/g/r/ns/a").await.unwrap().unwrap().value, VALUE);

    // Another resource's keys pass through.
    s.create("/g/other/ns/a", Bytes::from_static(VALUE)).await.unwrap();
    assert_eq!(backend.get("/g/other/ns/a").await.unwrap().unwrap().value, VALUE);

    // The ciphertext moved to another key does not read there: the full etcd key is authenticated.
    backend.create("/g/r/ns/b", raw.value.clone()).await.unwrap();
    let err = s.get("/g/r/ns/b").await.unwrap_err();
    let StorageError::Unreadable { message, revision, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*revision, backend.get("/g/r/ns/b").await.unwrap().unwrap().mod_revision);
    assert!(message.contains("/registry/g/r/ns/b") && message.contains("authentication failed"), "{message}");
    // A list with it fails as a whole, as upstream's; the value itself is untouched.
    assert!(s.list("/g/r/", Default::default()).await.is_err());
    assert_eq!(backend.get("/g/r/ns/b").await.unwrap().unwrap().value, raw.value);
    // It is deleted without being read: the previous value comes back empty, not as its ciphertext.
    let deleted = s.delete("/g/r/ns/b", Some(*revision)).await.unwrap();
    assert!(deleted.prev.value.is_empty());
    assert_eq!(backend.get("/g/r/ns/b").await.unwrap(), None);
}

#[tokio::test]
async fn a_rotated_key_still_reads_and_its_values_are_rewritten_on_update() {
    let backend: Arc<dyn Storage> = Arc::new(EmbeddedStorage::in_memory().unwrap());
    let old = encrypted(&backend, vec![gcm("key1", 1)]);
    let kv = old.create("/g/r/ns/a", Bytes::from_static(VALUE)).await.unwrap();
    assert!(!old.rewrite_needed("/g/r/ns/a", kv.mod_revision).await.unwrap(), "written by the key that writes");

    // key2 first, key1 kept to read.
    let new = encrypted(&backend, vec![gcm("key2", 2), gcm("key1", 1)]);
    assert_eq!(new.get("/g/r/ns/a").await.unwrap().unwrap().value, VALUE);
    assert!(new.rewrite_needed("/g/r/ns/a", kv.mod_revision).await.unwrap(), "written by key1");
    assert!(new.rewrite_needed("/g/r/ns/a", kv.mod_revision - 1).await.unwrap(), "changed since it was read");
    let kv = new.update("/g/r/ns/a", Bytes::from_static(VALUE), kv.mod_revision).await.unwrap();
    assert!(!new.rewrite_needed("/g/r/ns/a", kv.mod_revision).await.unwrap());
    let raw = backend.get("/g/r/ns/a").await.unwrap().unwrap();
    assert!(raw.value.starts_with(b"k8s:enc:aesgcm:v1:key2:"));

    // Without key2 the value no longer reads, and the error says which key it wants.
    let err = old.get("/g/r/ns/a").await.unwrap_err().to_string();
    assert!(err.contains("no matching key") && err.contains("key2"), "{err}");
    // Outside the encrypted resources nothing is ever rewritten.
    assert!(!new.rewrite_needed("/g/other/ns/a", 1).await.unwrap());
}

#[tokio::test]
async fn a_reloaded_configuration_applies_to_open_watches_and_the_next_writes() {
    use backup_storage::conformance::next_event;
    use backup_storage::encryption::ResourceTransformer as R;
    let backend: Arc<dyn Storage> = Arc::new(EmbeddedStorage::in_memory().unwrap());
    let s = encrypted(&backend, vec![gcm("key1", 1)]);
    let mut watch = s.watch("/g/r/", 0).await.unwrap();
    s.create("/g/r/ns/a", Bytes::from_static(VALUE)).await.unwrap();
    assert_eq!(next_event(&mut watch).await.unwrap().kv.value, VALUE);

    let rotated = Transformer::new(vec![Provider::new(ProviderKind::AesGcm, vec![gcm("key2", 2), gcm("key1", 1)])]);
    s.reload(vec![R { prefix: "/g/r/".into(), transformer: Arc::new(rotated.unwrap()) }]);
    s.create("/g/r/ns/b", Bytes::from_static(VALUE)).await.unwrap();
    assert!(backend.get("/g/r/ns/b").await.unwrap().unwrap().value.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
    assert_eq!(next_event(&mut watch).await.unwrap().kv.value, VALUE, "the open watch reads key2's value");
    assert_eq!(s.get("/g/r/ns/a").await.unwrap().unwrap().value, VALUE, "key1's still reads");
}
