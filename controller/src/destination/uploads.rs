//! Incomplete multipart uploads in an S3 bucket, listed (`ListMultipartUploads`, which `object_store` does not
//! offer) so that a backup run can abort what a crashed run of the same object left behind. The request is signed
//! by `object_store`'s own SigV4 [`AwsAuthorizer`] with the store's credentials and sent over the controller's HTTP
//! client, like the store's requests.
//!
//! API → controller → backup file → destination → object store → **incomplete uploads (this file)**.
//!
//! Not every S3-compatible server lists uploads: `s3s-fs` answers 501 NotImplemented. There (and when the bucket
//! policy refuses `s3:ListBucketMultipartUploads`) the listing is empty after one warning, and only a bucket
//! lifecycle rule `AbortIncompleteMultipartUpload` reclaims the parts of a crashed run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full, Limited};
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::HttpRequestBody;
use serde::Deserialize;

use crate::http::transport::Transport;

/// The most uploads read for one listing: 20 pages of 1000.
const MAX_PAGES: usize = 20;
/// The largest page read (1000 uploads take ~0.5 MiB).
const MAX_PAGE_BYTES: usize = 8 << 20;

/// The upload listing of one bucket.
pub struct Uploads {
    transport: Arc<dyn Transport>,
    timeout: Duration,
    credentials: AwsCredentialProvider,
    /// `https://host/bucket` (path style) or `https://bucket.host` (virtual-hosted style), as the store's requests.
    bucket_url: String,
    region: String,
    /// Set once the server answered that it does not list uploads (warned about once).
    unsupported: AtomicBool,
}

/// An incomplete upload: the key it will write, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub key: String,
    pub id: String,
}

impl Uploads {
    pub fn new(
        transport: Arc<dyn Transport>,
        timeout: Duration,
        credentials: AwsCredentialProvider,
        bucket_url: String,
        region: String,
    ) -> Self {
        Self { transport, timeout, credentials, bucket_url, region, unsupported: AtomicBool::new(false) }
    }

    /// The incomplete uploads of keys that start with `prefix` and have no `/` after it (with a trailing `/`: the
    /// keys directly under a directory); empty when the server does not list uploads.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<Upload>> {
        if self.unsupported.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        for _ in 0..MAX_PAGES {
            let Some(page) = self.page(prefix, markers.as_ref()).await? else {
                return Ok(Vec::new());
            };
            // Some servers (moto) ignore the delimiter: deeper keys are not a directory's files.
            out.extend(
                page.upload
                    .into_iter()
                    .filter(|u| u.key.strip_prefix(prefix).is_some_and(|rest| !rest.contains('/')))
                    .map(|u| Upload { key: u.key, id: u.upload_id }),
            );
            match (page.is_truncated, page.next_key_marker, page.next_upload_id_marker) {
                (true, Some(key), Some(id)) if !key.is_empty() => markers = Some((key, id)),
                _ => return Ok(out),
            }
        }
        tracing::warn!(prefix, listed = out.len(), "more incomplete uploads than one listing reads; the rest next run");
        Ok(out)
    }

    /// One page of the listing; `None` when the server does not implement it.
    async fn page(&self, prefix: &str, markers: Option<&(String, String)>) -> anyhow::Result<Option<ListResult>> {
        let mut query = vec![("uploads", ""), ("prefix", prefix), ("delimiter", "/")];
        if let Some((key, id)) = markers {
            query.extend([("key-marker", key.as_str()), ("upload-id-marker", id.as_str())]);
        }
        let url = crate::http::url(&self.bucket_url, "", &query);
        let credential = self.credentials.get_credential().await.context("S3 credentials")?;
        let mut req = http::Request::get(&url).body(HttpRequestBody::empty())?;
        AwsAuthorizer::new(&credential, "s3", &self.region).try_authorize(&mut req, None)?;
        let (parts, _) = req.into_parts();
        let response = tokio::time::timeout(self.timeout, async {
            let response = self.transport.send(http::Request::from_parts(parts, Full::new(Bytes::new()))).await?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_PAGE_BYTES).collect().await;
            let body = body.map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?.to_bytes();
            anyhow::Ok((status, body))
        })
        .await
        .context("timed out")
        .and_then(|r| r)
        .context("listing incomplete uploads")?;
        match response {
            (StatusCode::NOT_IMPLEMENTED, _) => {
                if !self.unsupported.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "this S3 server does not list multipart uploads (501): the parts of a crashed backup stay \
                         until a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes them"
                    );
                }
                Ok(None)
            }
            (status, body) if !status.is_success() => anyhow::bail!(
                "listing incomplete uploads: {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(512)])
            ),
            (_, body) => {
                let text = std::str::from_utf8(&body).context("listing incomplete uploads: not UTF-8")?;
                Ok(Some(quick_xml::de::from_str(text).context("listing incomplete uploads: unexpected XML")?))
            }
        }
    }
}

/// `ListMultipartUploadsResult`, what we read of it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListResult {
    #[serde(default)]
    upload: Vec<UploadXml>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadXml {
    key: String,
    upload_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_result() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>a/x.tsdb</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
  <Delimiter>/</Delimiter><Prefix>a/</Prefix><MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>a/w.tsdb</Key><UploadId>u1</UploadId><Initiator><ID>i</ID></Initiator>
    <StorageClass>STANDARD</StorageClass><Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>
  <Upload><Key>a/x.tsdb</Key><UploadId>u2</UploadId></Upload>
  <CommonPrefixes><Prefix>a/deeper/</Prefix></CommonPrefixes>
</ListMultipartUploadsResult>"#;
        let page: ListResult = quick_xml::de::from_str(xml).unwrap();
        let keys: Vec<(&str, &str)> = page.upload.iter().map(|u| (u.key.as_str(), u.upload_id.as_str())).collect();
        assert_eq!(keys, [("a/w.tsdb", "u1"), ("a/x.tsdb", "u2")]);
        assert!(page.is_truncated);
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("u2"));
        let empty: ListResult = quick_xml::de::from_str(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(empty.upload.is_empty() && !empty.is_truncated);
    }
}
