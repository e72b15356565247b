//! Building the auditor from the flags: the policy, and the log, the webhook or both.
//!
//! start → **audit setup** → the audit filter.

use anyhow::Context;

use super::{Auditor, log, policy, webhook};
use crate::metrics::{Metrics, PluginLabels};
use crate::options::Options;

/// The auditor the flags describe: None without `--audit-policy-file`; with it, the log
/// (`--audit-log-path`), the webhook (`--audit-webhook-config-file`) or both, one of them required.
pub async fn from_options(opts: &Options, metrics: &Metrics) -> anyhow::Result<Option<Auditor>> {
    let Some(policy) = &opts.audit_policy_file else { return Ok(None) };
    let policy = policy::Policy::load(policy)?;
    let errors = |plugin: &str| metrics.audit_errors.get_or_create(&PluginLabels { plugin: plugin.into() }).clone();
    let log = match &opts.audit_log_path {
        Some(path) => {
            let config = log::LogConfig {
                path: path.clone(),
                max_age_days: opts.audit_log_maxage,
                max_backups: opts.audit_log_maxbackup,
                max_size_mb: opts.audit_log_maxsize,
                compress: opts.audit_log_compress,
            };
            let log = log::AuditLog::start(config, metrics.audit_events.clone(), errors("log"))
                .with_context(|| format!("opening the audit log {}", path.display()))?;
            Some(log)
        }
        None => None,
    };
    let webhook = match &opts.audit_webhook_config_file {
        Some(kubeconfig) => {
            let config = webhook::WebhookConfig {
                kubeconfig: kubeconfig.clone(),
                buffer_size: opts.audit_webhook_batch_buffer_size,
                max_batch_size: opts.audit_webhook_batch_max_size,
                max_batch_wait: opts.audit_webhook_batch_max_wait,
                throttle: opts
                    .audit_webhook_batch_throttle_enable
                    .then_some((opts.audit_webhook_batch_throttle_qps, opts.audit_webhook_batch_throttle_burst)),
                initial_backoff: opts.audit_webhook_initial_backoff,
            };
            Some(webhook::AuditWebhook::start(config, metrics.audit_events.clone(), errors("webhook")).await?)
        }
        None => None,
    };
    if log.is_none() && webhook.is_none() {
        anyhow::bail!(
            "--audit-policy-file needs --audit-log-path (a file, or - for stdout) or --audit-webhook-config-file"
        );
    }
    Ok(Some(Auditor { policy, log, webhook }))
}
