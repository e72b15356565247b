//! Fuzzing entry points, not part of the server's API: [`run`] runs one input of one of the [`TARGETS`] through the
//! code a request runs, for the fuzz targets of `apiserver/fuzz` (`hack/fuzz.sh`) and for the replay of every input
//! that ever broke one (`tests/fuzz_regressions.rs`).
//!
//! Each input runs on a thread with a server worker's stack (2 MiB) against a fresh in-memory store holding one
//! valid object, and must leave what a request must: no panic, no stack overflow, every refusal a 4xx `Status`, and
//! whatever was stored readable again — by serde_json inside a list's `items`, by the next patch, by a labelled
//! list (whose Table rows and metadata read from the stored bytes must be those of the decoded object), and by a
//! delete.

use std::sync::{Arc, OnceLock};

use backup_storage::{ListOptions as StorageListOptions, Storage};
use serde_json::{Value, json};

use crate::admission::RequestContext;
use crate::endpoints::{output, patch};
use crate::error::{ApiError, ApiResult};
use crate::fieldmanager::managers;
use crate::registry::attrs::{self, Selectable};
use crate::registry::selectors::Filter;
use crate::registry::store::{Reads, Store};
use crate::request::body;
use crate::request::info::Subresource;
use crate::request::options::{
    ContinueToken, CreateOptions, DeleteOptions, FieldValidation, GetOptions, ListOptions, PatchOptions, UpdateOptions,
};
use crate::request::query::Query;

/// The fuzz targets.
pub const TARGETS: [&str; 8] = [
    "body",
    "patch_json",
    "patch_merge",
    "patch_strategic",
    "patch_apply",
    "selectors",
    "continue_token",
    "managed_fields",
];

/// Run `target` on `data`. `Err` names a broken invariant; a panic in the server's code panics here.
pub fn run(target: &str, data: &[u8]) -> Result<(), String> {
    let runtime = runtime()?;
    let (target, data) = (target.to_string(), data.to_vec());
    let task = runtime.spawn(async move { dispatch(&target, &data).await });
    match runtime.block_on(task) {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(format!("the task failed: {e}")),
    }
}

/// One worker thread with the stack tokio gives the server's workers.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_stack_size(2 * 1024 * 1024)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

async fn dispatch(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "body" => create(data).await,
        "patch_json" => patch(data, "application/json-patch+json").await,
        "patch_merge" => patch(data, "application/merge-patch+json").await,
        "patch_strategic" => patch(data, "application/strategic-merge-patch+json").await,
        "patch_apply" => patch(data, "application/apply-patch+yaml").await,
        "selectors" => selectors(data),
        "continue_token" => continue_token(data),
        "managed_fields" => managed_fields(data).await,
        other => Err(format!("no fuzz target {other:?}")),
    }
}

/// `Some` on success, `None` on a 4xx, `Err` on anything else.
fn refused_or<T>(result: ApiResult<T>) -> Result<Option<T>, String> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if (400..500).contains(&e.code) => Ok(None),
        Err(e) => Err(describe(&e)),
    }
}

fn describe(e: &ApiError) -> String {
    format!("{} {}: {}", e.code, e.reason, e.message)
}

/// How an input is sent, chosen by its first byte: bit 0 the kind (TimeseriesDBBackup, TimeseriesDBRestore), bit 1
/// the status subresource, bits 2–3 fieldValidation (Strict, Warn, Ignore), bit 4 force (apply), bit 5 YAML (body).
struct Choice {
    kind: usize,
    status: bool,
    field_validation: FieldValidation,
    force: bool,
    yaml: bool,
}

/// The choice of the first byte, and the input after it.
fn choose(data: &[u8]) -> (Choice, &[u8]) {
    let (first, rest) = data.split_first().map_or((0, data), |(f, r)| (*f, r));
    let field_validation = match (first >> 2) & 3 {
        0 => FieldValidation::Strict,
        1 => FieldValidation::Warn,
        _ => FieldValidation::Ignore,
    };
    let choice = Choice {
        kind: usize::from(first & 1),
        status: first & 2 != 0,
        field_validation,
        force: first & 16 != 0,
        yaml: first & 32 != 0,
    };
    (choice, rest)
}

const NAMESPACE: &str = "fuzz";

/// The fixture of a kind, built once: its object's name, storage key and stored bytes.
struct Fixture {
    name: &'static str,
    key: String,
    stored: bytes::Bytes,
}

/// A fresh in-memory store of `kind` holding the fixture's object (copied in, as building it takes a few writes).
async fn fixture(kind: usize) -> Result<(Store, &'static str), String> {
    static FIXTURES: tokio::sync::OnceCell<Result<Vec<Fixture>, String>> = tokio::sync::OnceCell::const_new();
    let fixtures = FIXTURES
        .get_or_init(|| async {
            let mut out = Vec::new();
            for kind in 0..backup_apis::kinds().len() {
                let (store, name) = build_fixture(kind).await?;
                let stored = store.storage.list("/", StorageListOptions::default()).await.map_err(|e| e.to_string())?;
                let [kv] = stored.items.as_slice() else { return Err("the fixture is not one object".to_string()) };
                out.push(Fixture { name, key: kv.key.clone(), stored: kv.value.clone() });
            }
            Ok(out)
        })
        .await
        .as_ref()
        .map_err(Clone::clone)?;
    let kinds = backup_apis::kinds();
    let (kind, fixture) = kinds.into_iter().zip(fixtures).nth(kind).ok_or("no such kind")?;
    let storage = backup_storage::embedded::EmbeddedStorage::in_memory().map_err(|e| e.to_string())?;
    storage.create(&fixture.key, fixture.stored.clone()).await.map_err(|e| e.to_string())?;
    Ok((backend_store(kind, Arc::new(storage)), fixture.name))
}

/// A store of `kind` holding one valid object with status, labels and managedFields of an updater and an applier,
/// built by requests.
async fn build_fixture(kind: usize) -> Result<(Store, &'static str), String> {
    let storage = backup_storage::embedded::EmbeddedStorage::in_memory().map_err(|e| e.to_string())?;
    let kind = backup_apis::kinds().into_iter().nth(kind).ok_or("no such kind")?;
    let store = backend_store(kind, Arc::new(storage));
    let backup = store.info().kind == "TimeseriesDBBackup";
    let (name, spec, status) = if backup {
        let spec = json!({"database": {"type": "Prometheus", "url": "http://prometheus:9090"}, "schedule": "@daily"});
        let status = json!({"phase": "Succeeded", "conditions": [
            {"type": "Ready", "status": "True", "reason": "Done", "message": "ok", "lastTransitionTime": "2026-07-01T03:02:00Z"},
            {"type": "Stalled", "status": "False", "reason": "Fine", "message": "", "lastTransitionTime": "2026-07-01T03:02:00Z"}]});
        ("nightly", spec, status)
    } else {
        let spec =
            json!({"backupRef": {"name": "nightly"}, "target": {"type": "VictoriaMetrics", "url": "http://vm:8428"}});
        let status = json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False", "reason": "Restoring", "message": "", "lastTransitionTime": "2026-07-01T08:00:05Z"}]});
        ("restore", spec, status)
    };
    let info = store.info();
    let object = json!({
        "apiVersion": info.api_version(), "kind": info.kind,
        "metadata": {"name": name, "labels": {"app": "fuzz"}, "annotations": {"a": "b"}, "finalizers": ["x/y"]},
        "spec": spec,
    });
    let create =
        CreateOptions { dry_run: false, field_validation: FieldValidation::Strict, field_manager: "creator".into() };
    let decoded = body::Decoded { value: object, duplicates: Vec::new() };
    store.create(NAMESPACE, decoded, &create, &anyone()).await.map_err(|e| describe(&e))?;
    let opts = |manager: &str| PatchOptions {
        dry_run: false,
        field_validation: FieldValidation::Strict,
        field_manager: manager.into(),
        force: false,
    };
    let status_patch = json!({"status": status}).to_string();
    let at = (NAMESPACE, name, &Subresource::Status);
    patch::write(&store, at, "application/merge-patch+json", status_patch.as_bytes(), &opts("controller"), &anyone())
        .await
        .map_err(|e| describe(&e))?;
    let applied = json!({
        "apiVersion": info.api_version(), "kind": info.kind,
        "metadata": {"name": name, "labels": {"team": "sre"}},
    })
    .to_string();
    let at = (NAMESPACE, name, &Subresource::Main);
    let apply = PatchOptions { force: true, ..opts("applier") };
    patch::write(&store, at, "application/apply-patch+yaml", applied.as_bytes(), &apply, &anyone())
        .await
        .map_err(|e| describe(&e))?;
    Ok((store, name))
}

/// What was stored is still usable: it decodes (inside a list, too), patches, lists with a selector, and deletes.
async fn still_usable(store: &Store, name: &str) -> Result<(), String> {
    match store.get(NAMESPACE, name, &GetOptions::default()).await {
        Ok(bytes) => {
            serde_json::from_slice::<Value>(&bytes).map_err(|e| format!("the stored object does not decode: {e}"))?;
            let mut list = b"{\"items\":[".to_vec();
            list.extend_from_slice(&bytes);
            list.extend_from_slice(b"]}");
            serde_json::from_slice::<Value>(&list)
                .map_err(|e| format!("a list of the stored object does not decode: {e}"))?;
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(describe(&e)),
    }
    let opts = PatchOptions {
        dry_run: true,
        field_validation: FieldValidation::Strict,
        field_manager: "after".into(),
        force: false,
    };
    refused_or(
        patch::write(
            store,
            (NAMESPACE, name, &Subresource::Main),
            "application/merge-patch+json",
            b"{}",
            &opts,
            &anyone(),
        )
        .await,
    )
    .map_err(|e| format!("a merge patch after it: {e}"))?;
    let list =
        ListOptions::from_query(&Query::parse(Some("labelSelector=app%3Dfuzz")), false).map_err(|e| describe(&e))?;
    let page = refused_or(store.list(Some(NAMESPACE), &list).await).map_err(|e| format!("a list after it: {e}"))?;
    let mut warnings = Vec::new();
    if let Some(page) = page {
        for object in &page.items {
            let kv = object.kv();
            output::stored_renderings_match_decoded(store, &kv.value, kv.mod_revision)
                .map_err(|e| format!("a listed item: {e}"))?;
        }
        for item in page.into_objects(&mut warnings) {
            refused_or(item).map_err(|e| format!("a listed item: {e}"))?;
        }
    }
    if let Some(unreadable) = warnings.iter().find(|w| w.contains("cannot be decoded")) {
        return Err(format!("a list after it: {unreadable}"));
    }
    let delete = DeleteOptions {
        dry_run: true,
        propagation_policy: None,
        precondition_uid: None,
        precondition_resource_version: None,
        ignore_store_read_error: false,
    };
    refused_or(store.delete(NAMESPACE, name, &delete, &anyone()).await)
        .map_err(|e| format!("a delete after it: {e}"))?;
    Ok(())
}

/// A create body (JSON, or YAML by the first byte) decoded and validated by the kind's strategy.
async fn create(data: &[u8]) -> Result<(), String> {
    let (choice, raw) = choose(data);
    let (store, _) = fixture(choice.kind).await?;
    let media = if choice.yaml { "application/yaml" } else { "application/json" };
    let Some(decoded) = refused_or(body::decode_object(media, raw))? else { return Ok(()) };
    let name = decoded.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let opts =
        CreateOptions { dry_run: false, field_validation: choice.field_validation, field_manager: "fuzz".into() };
    if refused_or(store.create(NAMESPACE, decoded, &opts, &anyone()).await)?.is_some() && !name.is_empty() {
        still_usable(&store, &name).await?;
    }
    Ok(())
}

/// A patch of content type `media` applied to the fixture's object (or its status).
async fn patch(data: &[u8], media: &str) -> Result<(), String> {
    let (choice, raw) = choose(data);
    let (store, name) = fixture(choice.kind).await?;
    let sub = if choice.status { Subresource::Status } else { Subresource::Main };
    let apply = media == "application/apply-patch+yaml";
    let opts = PatchOptions {
        dry_run: false,
        field_validation: choice.field_validation,
        field_manager: "fuzz".into(),
        force: apply && choice.force,
    };
    refused_or(patch::write(&store, (NAMESPACE, name, &sub), media, raw, &opts, &anyone()).await)?;
    still_usable(&store, name).await
}

/// A label selector and a field selector (separated by the first newline), parsed and matched.
fn selectors(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let (labels, fields) = text.split_once('\n').unwrap_or((&text, ""));
    let kinds = backup_apis::kinds();
    let kind = kinds.first().ok_or("no kinds")?.clone();
    let strategy = crate::registry::strategy::Strategy::new(kind);
    let Some(filter) = refused_or(Filter::new(&strategy, labels, fields))? else { return Ok(()) };
    let object = json!({"metadata": {"name": "x", "namespace": "y", "labels": {"app": "fuzz", "tier": "1"}},
                        "spec": {"database": {"type": "Prometheus"}}});
    filter.matches_selectable(&strategy, &Selectable::of(&strategy, &object));
    Ok(())
}

/// A continue token: decoded, and one that decodes encodes back to itself.
fn continue_token(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let Some(token) = refused_or(ContinueToken::decode(&text))? else { return Ok(()) };
    let again = ContinueToken::decode(&token.encode()).map_err(|e| describe(&e))?;
    if again != token {
        return Err(format!("{token:?} encodes to a token of {again:?}"));
    }
    Ok(())
}

/// managedFields (JSON): decoded and encoded back stably, and sent in an update of the fixture's object.
async fn managed_fields(data: &[u8]) -> Result<(), String> {
    let (choice, raw) = choose(data);
    let Ok(entries) = serde_json::from_slice::<Value>(raw) else { return Ok(()) };
    if let Ok(decoded) = managers::decode(&entries) {
        let encoded = managers::encode(&decoded).unwrap_or(Value::Array(Vec::new()));
        let again = managers::decode(&encoded).map_err(|e| format!("encoded managedFields do not decode: {e}"))?;
        if again != decoded {
            return Err(format!("managedFields change when encoded: {encoded}"));
        }
    }
    let (store, name) = fixture(choice.kind).await?;
    let Some(current) = refused_or(store.get(NAMESPACE, name, &GetOptions::default()).await)? else { return Ok(()) };
    let mut object: Value = serde_json::from_slice(&current).map_err(|e| e.to_string())?;
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), entries);
    }
    let sub = if choice.status { Subresource::Status } else { Subresource::Main };
    let opts =
        UpdateOptions { dry_run: false, field_validation: choice.field_validation, field_manager: "fuzz".into() };
    // As a PUT body: decoded with a body's limits.
    let Some(decoded) = refused_or(body::decode_object("application/json", object.to_string().as_bytes()))? else {
        return Ok(());
    };
    refused_or(store.update(NAMESPACE, name, decoded, &sub, &opts, &anyone()).await)?;
    still_usable(&store, name).await
}

/// The request context of a fuzzed write: an anonymous user, not audited (no admission runs without a cluster).
fn anyone() -> RequestContext {
    RequestContext::new(Default::default(), None)
}

/// A store of `kind` reading and writing `storage` directly (no watch cache), admitting nothing, never stopping.
fn backend_store(kind: Arc<dyn backup_apis::Kind>, storage: Arc<dyn Storage>) -> Store {
    let never_stops = tokio::sync::watch::channel(false).1;
    Store::new(kind, storage.clone(), Reads::Backend { storage, attrs: attrs::hook() }, None, never_stops)
}
