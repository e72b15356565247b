//! `--encryption-provider-config`: upstream's EncryptionConfiguration (`apiserver.config.k8s.io/v1`), read and
//! checked at start, turned into the providers `backup_storage::encryption` applies to each served resource.
//!
//! backend → **encryption configuration** → `backup_storage::encryption` (between the watch cache and storage).
//!
//! A resource is named `<resource>.<group>` (`timeseriesdbbackups.backup.extend-k8s.io`), or by upstream's later
//! wildcards `*.<group>` and `*.*`; the first entry naming a resource is its. The file may be the one
//! kube-apiserver reads: entries for other resources are ignored (and said so in the log). Upstream's `kms`
//! provider needs a KMS plugin this server does not speak to: an entry that would apply it to a served resource
//! is refused at start, rather than storing that resource in clear. With
//! `--encryption-provider-config-automatic-reload` the file is looked at every 5 s and applied when it changed
//! and loads ([`Reload`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, bail};
use backup_apis::ResourceInfo;
use backup_storage::encryption::{
    AesKey, Cipher, EncryptedStorage, GcmKey, NamedKey, Provider, ProviderKind, ResourceTransformer, SECRETBOX_KEY,
    Transformer,
};
use base64::Engine;
use serde::Deserialize;

use crate::metrics::Metrics;
use crate::metrics::encryption::ReloadLabels;

/// The file, as upstream's `EncryptionConfiguration`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionConfiguration {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    resources: Vec<ResourceConfiguration>,
}

#[derive(Debug, Deserialize)]
struct ResourceConfiguration {
    #[serde(default, deserialize_with = "null_as_empty")]
    resources: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    providers: Vec<ProviderConfiguration>,
}

/// One element of `providers`: exactly one of its fields is set.
#[derive(Debug, Deserialize)]
struct ProviderConfiguration {
    aesgcm: Option<KeysConfiguration>,
    aescbc: Option<KeysConfiguration>,
    secretbox: Option<KeysConfiguration>,
    identity: Option<serde_json::Value>,
    kms: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct KeysConfiguration {
    #[serde(default, deserialize_with = "null_as_empty")]
    keys: Vec<KeyConfiguration>,
}

#[derive(Debug, Deserialize)]
struct KeyConfiguration {
    #[serde(default)]
    name: String,
    /// Base64 of the key's bytes.
    #[serde(default)]
    secret: String,
}

/// A list left empty in YAML (`providers:`) is null: read as an empty list, as Go's YAML reads it.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// The providers `text` (read from `path`, named in errors) configures for each of `served`'s resources.
pub fn from_file(path: &Path, text: &[u8], served: &[ResourceInfo]) -> anyhow::Result<Vec<ResourceTransformer>> {
    let text = std::str::from_utf8(text).context("the file is not UTF-8");
    let served: Vec<&ResourceInfo> = served.iter().collect();
    text.and_then(|text| parse(text, &served))
        .with_context(|| format!("--encryption-provider-config {}", path.display()))
}

/// `--encryption-provider-config-automatic-reload`: the file looked at every [`RELOAD_INTERVAL`], applied when
/// its bytes changed and it loads.
pub struct Reload {
    pub path: PathBuf,
    pub served: Vec<ResourceInfo>,
    /// The bytes in force.
    pub loaded: Vec<u8>,
    pub metrics: Arc<Metrics>,
}

/// How often the file is looked at (as the serving certificates are).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

impl Reload {
    /// Until the storage is gone (the server stopped).
    pub async fn run(mut self, storage: Weak<EncryptedStorage>) {
        let mut ticks = tokio::time::interval(RELOAD_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(storage) = storage.upgrade() else { return };
            // A file being replaced may be missing for a moment: tried again at the next tick.
            let Ok(text) = tokio::fs::read(&self.path).await else { continue };
            if text == self.loaded {
                continue;
            }
            match from_file(&self.path, &text, &self.served) {
                Ok(resources) => {
                    self.metrics.encryption(&resources);
                    storage.reload(resources);
                    self.metrics.encryption_reloads.get_or_create(&ReloadLabels::success()).inc();
                    tracing::info!(path = %self.path.display(), "encryption configuration reloaded");
                }
                Err(e) => {
                    self.metrics.encryption_reloads.get_or_create(&ReloadLabels::failure()).inc();
                    tracing::error!("{e:#}; the configuration in force stays");
                }
            }
            self.loaded = text;
        }
    }
}

/// The providers the file's text configures for `served`.
pub fn parse(text: &str, served: &[&ResourceInfo]) -> anyhow::Result<Vec<ResourceTransformer>> {
    let config: EncryptionConfiguration = serde_saphyr::from_str(text).context("parsing the file")?;
    if config.kind != "EncryptionConfiguration" || config.api_version != "apiserver.config.k8s.io/v1" {
        bail!(
            "not an encryption configuration (apiVersion apiserver.config.k8s.io/v1, kind EncryptionConfiguration; \
             found {:?} {:?})",
            config.api_version,
            config.kind
        );
    }
    if config.resources.is_empty() {
        bail!("resources: Required value: at least one resource entry is required");
    }
    let mut result = Vec::new();
    for (i, entry) in config.resources.iter().enumerate() {
        let field = format!("resources[{i}]");
        if entry.resources.is_empty() {
            bail!("{field}.resources: Required value: at least one resource is required");
        }
        if entry.providers.is_empty() {
            bail!("{field}.providers: Required value: at least one provider is required");
        }
        // Checked whether or not it applies here, so a mistake shows on whichever server reads the file first.
        let providers = entry
            .providers
            .iter()
            .enumerate()
            .map(|(j, p)| provider(p, &format!("{field}.providers[{j}]")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mine: Vec<&ResourceInfo> = served
            .iter()
            .copied()
            .filter(|info| entry.resources.iter().any(|name| names(name, info)))
            .filter(|info| !result.iter().any(|r: &ResourceTransformer| r.prefix == prefix(info)))
            .collect();
        for name in &entry.resources {
            if let Some(info) = served.iter().find(|info| name == info.plural) {
                tracing::warn!(
                    "--encryption-provider-config {field} names {name:?} without its group, which names a core \
                     resource: write {:?} to encrypt this server's",
                    format!("{}.{}", info.plural, info.group)
                );
            }
        }
        if mine.is_empty() {
            tracing::info!("--encryption-provider-config {field} names no resource this server serves");
            continue;
        }
        let Some(providers) = providers.into_iter().collect::<Option<Vec<_>>>() else {
            bail!(
                "{field}: the kms provider needs a KMS plugin, which this server does not support; encrypt {} with \
                 aescbc, aesgcm or secretbox",
                mine.iter().map(|i| format!("{}.{}", i.plural, i.group)).collect::<Vec<_>>().join(", ")
            );
        };
        let Some(transformer) = Transformer::new(providers) else { continue };
        let transformer = Arc::new(transformer);
        for info in mine {
            let first = transformer.providers().first().map_or("identity", |p| p.kind.name());
            tracing::info!("encryption at rest of {}.{}: written by {first}", info.plural, info.group);
            result.push(ResourceTransformer { prefix: prefix(info), transformer: transformer.clone() });
        }
    }
    Ok(result)
}

/// Whether the configuration's resource `name` names `info`.
fn names(name: &str, info: &ResourceInfo) -> bool {
    match name.split_once('.') {
        Some(("*", "*")) => true,
        Some(("*", group)) => group == info.group,
        Some((resource, group)) => resource == info.plural && group == info.group,
        None => false,
    }
}

fn prefix(info: &ResourceInfo) -> String {
    format!("/{}/{}/", info.group, info.plural)
}

/// One provider, checked as upstream checks it; `None` for kms (refused only where it would apply).
fn provider(config: &ProviderConfiguration, field: &str) -> anyhow::Result<Option<Provider>> {
    let set = [
        config.aesgcm.is_some(),
        config.aescbc.is_some(),
        config.secretbox.is_some(),
        config.identity.is_some(),
        config.kms.is_some(),
    ];
    match set.iter().filter(|s| **s).count() {
        0 => bail!(
            "{field}: Invalid value: provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, \
             Secretbox, Identity"
        ),
        1 => {}
        _ => bail!(
            "{field}: Invalid value: more than one provider specified in a single element, should split into different list elements"
        ),
    }
    let (kind, keys) = match config {
        ProviderConfiguration { aesgcm: Some(keys), .. } => (ProviderKind::AesGcm, keys),
        ProviderConfiguration { aescbc: Some(keys), .. } => (ProviderKind::AesCbc, keys),
        ProviderConfiguration { secretbox: Some(keys), .. } => (ProviderKind::Secretbox, keys),
        ProviderConfiguration { identity: Some(_), .. } => {
            return Ok(Some(Provider::new(ProviderKind::Identity, vec![])));
        }
        _ => return Ok(None),
    };
    let field = format!("{field}.{}.keys", kind.name());
    if keys.keys.is_empty() {
        bail!("{field}: Required value: at least one key is required");
    }
    let keys = keys.keys.iter().enumerate().map(|(i, k)| key(kind, k, &format!("{field}[{i}]")));
    Ok(Some(Provider::new(kind, keys.collect::<anyhow::Result<_>>()?)))
}

fn key(kind: ProviderKind, config: &KeyConfiguration, field: &str) -> anyhow::Result<NamedKey> {
    if config.name.is_empty() {
        bail!("{field}.name: Required value: key name is required");
    }
    if config.secret.is_empty() {
        bail!("{field}.secret: Required value: secret is required");
    }
    let secret = base64::engine::general_purpose::STANDARD.decode(config.secret.trim()).map_err(|e| {
        anyhow::anyhow!("{field}.secret: Invalid value: REDACTED: secrets must be base64 encoded ({e})")
    })?;
    let cipher = match kind {
        ProviderKind::AesGcm => GcmKey::new(&secret).map(Cipher::AesGcm),
        ProviderKind::AesCbc => AesKey::new(&secret).map(Cipher::AesCbc),
        _ => <[u8; SECRETBOX_KEY]>::try_from(secret.as_slice()).ok().map(Cipher::Secretbox),
    };
    let expected = if kind == ProviderKind::Secretbox { "[32]" } else { "[16 24 32]" };
    let Some(cipher) = cipher else {
        bail!(
            "{field}.secret: Invalid value: REDACTED: secret is not of the expected length, got {}, expected one of {expected}",
            secret.len()
        );
    };
    Ok(NamedKey { name: config.name.clone(), cipher })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY16: &str = "MTIzNDU2Nzg5MDEyMzQ1Ng=="; // 16 bytes
    const KEY32: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI="; // 32 bytes

    fn infos() -> Vec<ResourceInfo> {
        backup_apis::kinds().iter().map(|k| k.resource().clone()).collect()
    }

    fn parsed(text: &str) -> anyhow::Result<Vec<ResourceTransformer>> {
        let infos = infos();
        parse(text, &infos.iter().collect::<Vec<_>>())
    }

    fn error(text: &str) -> String {
        match parsed(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn config(resources: &str) -> String {
        format!("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n{resources}")
    }

    #[test]
    fn applies_the_first_entry_naming_each_served_resource() {
        let text = config(&format!(
            "- resources: [secrets]\n  providers: [{{kms: {{name: k, endpoint: unix:///kms.sock}}}}]
- resources: [timeseriesdbbackups.backup.extend-k8s.io]
  providers:
  - aesgcm: {{keys: [{{name: key1, secret: {KEY32}}}]}}
  - identity: {{}}
- resources: ['*.*']
  providers: [{{secretbox: {{keys: [{{name: s, secret: {KEY32}}}]}}}}]"
        ));
        let result = parsed(&text).unwrap();
        let kinds: Vec<(&str, Vec<ProviderKind>)> = result
            .iter()
            .map(|r| (r.prefix.as_str(), r.transformer.providers().iter().map(|p| p.kind).collect()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("/backup.extend-k8s.io/timeseriesdbbackups/", vec![ProviderKind::AesGcm, ProviderKind::Identity]),
                ("/backup.extend-k8s.io/timeseriesdbrestores/", vec![ProviderKind::Secretbox]),
            ],
            "kms for secrets does not concern this server"
        );
    }

    #[test]
    fn names_by_group_wildcard_and_not_by_the_bare_resource() {
        let group = config(&format!(
            "- resources: ['*.backup.extend-k8s.io']\n  providers: [{{aescbc: {{keys: [{{name: a, secret: {KEY16}}}]}}}}]"
        ));
        assert_eq!(parsed(&group).unwrap().len(), 2);
        let bare = config(&format!(
            "- resources: [timeseriesdbbackups]\n  providers: [{{aescbc: {{keys: [{{name: a, secret: {KEY16}}}]}}}}]"
        ));
        assert!(parsed(&bare).unwrap().is_empty(), "a bare name is a core resource, as upstream reads it");
    }

    #[test]
    fn refuses_what_upstream_refuses_with_its_words() {
        let cases = [
            (
                "- resources: ['*.*']\n  providers: [{aesgcm: {keys: [{name: k, secret: c2hvcnQ=}]}}]",
                "secret is not of the expected length, got 5, expected one of [16 24 32]",
            ),
            (
                &format!(
                    "- resources: ['*.*']\n  providers: [{{secretbox: {{keys: [{{name: k, secret: {KEY16}}}]}}}}]"
                ),
                "got 16, expected one of [32]",
            ),
            (
                "- resources: ['*.*']\n  providers: [{aescbc: {keys: [{name: k, secret: '!!'}]}}]",
                "secrets must be base64 encoded",
            ),
            ("- resources: ['*.*']\n  providers: [{aescbc: {keys: [{secret: c2hvcnQ=}]}}]", "key name is required"),
            ("- resources: ['*.*']\n  providers: [{aescbc: {keys: []}}]", "at least one key is required"),
            (
                "- resources: ['*.*']\n  providers: [{aesgmc: {keys: []}}]",
                "provider does not contain any of the expected providers",
            ),
            (
                &format!(
                    "- resources: ['*.*']\n  providers: [{{identity: {{}}, aescbc: {{keys: [{{name: k, secret: {KEY16}}}]}}}}]"
                ),
                "more than one provider",
            ),
            ("- resources: ['*.*']\n  providers: []", "at least one provider is required"),
            ("- resources: []\n  providers: [{identity: {}}]", "at least one resource is required"),
            (
                "- resources: ['*.backup.extend-k8s.io']\n  providers: [{kms: {name: k}}]",
                "the kms provider needs a KMS plugin",
            ),
        ];
        for (resources, expected) in cases {
            let e = error(&config(resources));
            assert!(e.contains(expected), "{resources}: {e}");
            assert!(!e.contains(KEY16) && !e.contains("c2hvcnQ"), "no secret in the message: {e}");
        }
        let e = error("apiVersion: v1\nkind: EncryptionConfig\nresources: []");
        assert!(e.contains("not an encryption configuration"), "{e}");
    }
}
