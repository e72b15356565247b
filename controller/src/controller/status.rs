//! Writing status: conditions (set with Kubernetes' transition-time rules; messages sanitised and capped) and merge
//! patches of the whole status through the status subresource, with `null` for cleared fields.
//!
//! API → controller → **status (this file)**.

use backup_apis::status::{Condition, ConditionStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// `Ready`: the last backup or restore succeeded.
pub const READY: &str = "Ready";
/// `Running`: a backup or restore is in progress.
pub const RUNNING: &str = "Running";
/// `Empty`: the last backup holds no sample (the database answered with no series: a wrong selector, URL or
/// database name?).
pub const EMPTY: &str = "Empty";

/// Sets the condition of `type_`, keeping its transition time unless its status changes. The message is sanitised.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
) {
    let now = Some(Time(jiff::Timestamp::now()));
    let message = &crate::sanitize::message(message);
    match conditions.iter_mut().find(|c| c.r#type == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = Some(reason.to_owned());
            c.message = Some(message.to_owned());
        }
        None => conditions.push(Condition {
            r#type: type_.to_owned(),
            status,
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_transition_time: now,
        }),
    }
}

/// Removes the condition of `type_`.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.r#type != type_);
}

/// Replaces the object's status (`keys` that `status` leaves out are cleared) with a merge patch on `/status`.
pub async fn patch<K, S>(api: &Api<K>, name: &str, status: &S, keys: &[&str]) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    patch_at(api, name, status, keys, None).await
}

/// [`patch`], only if the object is still at `resource_version` (else a 409 Conflict: another writer came first).
pub async fn patch_at<K, S>(
    api: &Api<K>,
    name: &str,
    status: &S,
    keys: &[&str],
    resource_version: Option<&str>,
) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let mut value = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
    if let Value::Object(map) = &mut value {
        for key in keys {
            map.entry(*key).or_insert(Value::Null);
        }
    }
    let body = match resource_version {
        Some(rv) => json!({ "metadata": { "resourceVersion": rv }, "status": value }),
        None => json!({ "status": value }),
    };
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(body)).await?;
    Ok(())
}

/// Writes only `status.progress` (a running job's figures).
pub async fn patch_progress<K>(
    api: &Api<K>,
    name: &str,
    progress: &backup_apis::status::Progress,
) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let body = json!({ "status": { "progress": progress } });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(body)).await?;
    Ok(())
}

/// Writes a job's progress every `interval` until dropped (the job's end): the task the returned guard holds.
pub fn report_progress<K>(
    api: Api<K>,
    name: &str,
    progress: std::sync::Arc<crate::progress::Progress>,
    interval: std::time::Duration,
) -> super::jobs::AbortOnDrop
where
    K: Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let name = name.to_owned();
    super::jobs::AbortOnDrop::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = patch_progress(&api, &name, &progress.status()).await {
                tracing::debug!(name, error = %e, "could not write the progress");
            }
        }
    })
}

/// A human-readable byte count.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Whether an API error says the object is gone.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A duration for people: `750ms`, `12s`, `3m20s`, `2h5m`.
pub fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_transition_time() {
        let mut c = Vec::new();
        set_condition(&mut c, READY, ConditionStatus::False, "Failed", "down");
        let t0 = c[0].last_transition_time.clone();
        set_condition(&mut c, READY, ConditionStatus::False, "Failed", "still down");
        assert_eq!(c[0].last_transition_time, t0);
        assert_eq!(c[0].message.as_deref(), Some("still down"));
        set_condition(&mut c, RUNNING, ConditionStatus::True, "Started", "");
        assert_eq!(c.len(), 2);
        set_condition(&mut c, RUNNING, ConditionStatus::False, "Failed", "bad \u{1b}[31m bytes\0");
        assert_eq!(c[1].message.as_deref(), Some("bad \\x1b[31m bytes\\x00"));
        remove_condition(&mut c, RUNNING);
        assert_eq!(c.len(), 1);
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(duration(std::time::Duration::from_secs(200)), "3m20s");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
