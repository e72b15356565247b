//! A database endpoint made into an HTTP client: its `tls` (CA bundle from a Secret or ConfigMap, server name,
//! `insecureSkipVerify`) and `auth` (basic, bearer, InfluxDB user and password, from Secrets) resolved in the
//! object's own namespace.
//!
//! API → controller → **connect (this file)** → secrets; HTTP → database.
//!
//! Credentials go into a sensitive `Authorization` header and nowhere else: errors name the Secret and key, never a
//! value.

use anyhow::Context as _;
use backup_apis::database::{Auth, DatabaseEndpoint, KeyRef, UserPassword};
use base64::Engine;
use http::HeaderValue;

use super::Context;
use crate::http::Http;
use crate::http::transport::TlsSettings;
use crate::secrets::Holder;

/// The client for `endpoint` (at `field`, e.g. `spec.database`, for messages) of an object in `namespace`.
pub async fn connect(ctx: &Context, endpoint: &DatabaseEndpoint, namespace: &str, field: &str) -> anyhow::Result<Http> {
    let engine = format!("{:?}", endpoint.r#type);
    let mut http = ctx.http.clone().with_error_counter(ctx.metrics.engine_errors(&engine));
    if let Some(tls) = &endpoint.tls {
        let ca_pem = match &tls.ca {
            None => None,
            Some(ca) => {
                let (holder, key) = match (&ca.secret, &ca.config_map) {
                    (Some(key), None) => (Holder::Secret, key),
                    (None, Some(key)) => (Holder::ConfigMap, key),
                    _ => anyhow::bail!("{field}.tls.ca must name exactly one of secret or configMap"),
                };
                Some(read(ctx, holder, namespace, key, &format!("{field}.tls.ca")).await?)
            }
        };
        let settings = TlsSettings {
            ca_pem,
            server_name: tls.server_name.clone(),
            insecure_skip_verify: tls.insecure_skip_verify,
        };
        let transport = ctx.connector.with_tls(&settings).with_context(|| format!("{field}.tls"))?;
        http = http.with_transport(transport);
    }
    if let Some(auth) = &endpoint.auth {
        http = http.with_authorization(authorization(ctx, auth, namespace, field).await?);
    }
    Ok(http)
}

async fn authorization(ctx: &Context, auth: &Auth, namespace: &str, field: &str) -> anyhow::Result<HeaderValue> {
    match (&auth.basic, &auth.bearer, &auth.influxdb) {
        (Some(pair), None, None) => basic(ctx, pair, namespace, &format!("{field}.auth.basic")).await,
        // InfluxDB 1.x takes its users' credentials as HTTP basic authentication too (never `u=`/`p=` in the URL).
        (None, None, Some(pair)) => basic(ctx, pair, namespace, &format!("{field}.auth.influxdb")).await,
        (None, Some(bearer), None) => {
            let path = format!("{field}.auth.bearer.token");
            let token = read(ctx, Holder::Secret, namespace, &bearer.token, &path).await?;
            let token = String::from_utf8(token).map_err(|_| anyhow::anyhow!("{path}: the token is not UTF-8"))?;
            header(&format!("Bearer {}", token.trim()), &path)
        }
        _ => anyhow::bail!("{field}.auth must set exactly one of basic, bearer or influxdb"),
    }
}

async fn basic(ctx: &Context, pair: &UserPassword, namespace: &str, path: &str) -> anyhow::Result<HeaderValue> {
    let mut credentials = read(ctx, Holder::Secret, namespace, &pair.username, &format!("{path}.username")).await?;
    let password = read(ctx, Holder::Secret, namespace, &pair.password, &format!("{path}.password")).await?;
    credentials.push(b':');
    credentials.extend_from_slice(&password);
    header(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials)), path)
}

/// One value; a user name or password ends at its first line end (files and `kubectl create secret
/// --from-file` often carry a trailing newline).
async fn read(ctx: &Context, holder: Holder, namespace: &str, key: &KeyRef, path: &str) -> anyhow::Result<Vec<u8>> {
    let mut value = ctx.secrets.get(holder, namespace, &key.name, &key.key).await.with_context(|| path.to_owned())?;
    if !path.ends_with(".ca") {
        while value.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            value.pop();
        }
    }
    Ok(value)
}

fn header(value: &str, path: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| anyhow::anyhow!("{path}: the credentials hold characters an HTTP header cannot carry"))?;
    value.set_sensitive(true);
    Ok(value)
}
