//! Response bodies read as they arrive: chunk by chunk (optionally read ahead by a task, in bounded memory) or line by
//! line with a cap on the line length.
//!
//! API → controller → engine → HTTP → **bodies (this file)** ← database.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// A response body, read as it arrives.
pub struct Body {
    source: Source,
    timeout: Duration,
    content_type: Option<String>,
}

enum Source {
    Direct(Incoming),
    /// Read ahead by a task (see [`Body::read_ahead`]), which is aborted when the body is dropped.
    Ahead {
        chunks: tokio::sync::mpsc::Receiver<anyhow::Result<Option<Bytes>>>,
        _reader: AbortOnDrop,
    },
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Body {
    pub(super) fn new(inner: Incoming, timeout: Duration, content_type: Option<String>) -> Self {
        Body { source: Source::Direct(inner), timeout, content_type }
    }

    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// Reads ahead in a task, up to `depth` chunks, so the database keeps sending while the caller decodes what
    /// came (on another core); memory stays bounded by `depth` chunks.
    pub fn read_ahead(self, depth: usize) -> Body {
        let Body { source, timeout, content_type } = self;
        let inner = match source {
            Source::Direct(inner) => inner,
            ahead => return Body { source: ahead, timeout, content_type },
        };
        let (tx, rx) = tokio::sync::mpsc::channel(depth);
        let mut direct = Body { source: Source::Direct(inner), timeout, content_type: None };
        let task = tokio::spawn(async move {
            loop {
                let next = direct.chunk().await;
                let end = !matches!(next, Ok(Some(_)));
                if tx.send(next).await.is_err() || end {
                    break;
                }
            }
        });
        Body { source: Source::Ahead { chunks: rx, _reader: AbortOnDrop(task) }, timeout, content_type }
    }

    /// The next data chunk; `None` at the end.
    pub async fn chunk(&mut self) -> anyhow::Result<Option<Bytes>> {
        let inner = match &mut self.source {
            Source::Direct(inner) => inner,
            Source::Ahead { chunks, .. } => return chunks.recv().await.unwrap_or(Ok(None)),
        };
        loop {
            let frame = tokio::time::timeout(self.timeout, inner.frame())
                .await
                .with_context(|| format!("no data from the database within {:?}", self.timeout))?;
            match frame {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame.context("reading the response")?.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// Reads the whole body (for small answers), failing beyond `limit` bytes.
    pub async fn bytes(mut self, limit: usize) -> anyhow::Result<Bytes> {
        let mut out = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            if out.len() + chunk.len() > limit {
                bail!("answer larger than {limit} bytes");
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    pub(super) async fn text_prefix(&mut self, limit: usize) -> anyhow::Result<String> {
        let mut out = Vec::new();
        while out.len() < limit {
            match self.chunk().await? {
                Some(chunk) => out.extend_from_slice(&chunk[..chunk.len().min(limit - out.len())]),
                None => break,
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Splits the body into lines, each at most `max_line` bytes.
    pub fn lines(self, max_line: usize) -> Lines {
        Lines {
            body: self,
            chunk: Bytes::new(),
            line: Bytes::new(),
            partial: Vec::new(),
            partial_returned: false,
            max_line,
            done: false,
        }
    }
}

/// Newline-delimited records of a streamed body, in bounded memory. A line inside one chunk is handed out in place;
/// only a line spread over chunks is copied, into one reused buffer.
pub struct Lines {
    body: Body,
    /// The rest of the last chunk read, after the lines already returned.
    chunk: Bytes,
    /// The line returned last, when it lay inside one chunk.
    line: Bytes,
    /// The start of a line spread over chunks (and the line returned last, when `partial_returned`).
    partial: Vec<u8>,
    partial_returned: bool,
    max_line: usize,
    done: bool,
}

impl Lines {
    /// The next non-empty line, without its `\n`; valid until the next call.
    pub async fn next(&mut self) -> anyhow::Result<Option<&[u8]>> {
        if std::mem::take(&mut self.partial_returned) {
            self.partial.clear();
        }
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.chunk) {
                let mut head = self.chunk.split_to(pos + 1);
                head.truncate(pos);
                if self.partial.len() + head.len() > self.max_line {
                    bail!("a line of the answer is longer than {} bytes (--max-piece-bytes)", self.max_line);
                }
                if self.partial.is_empty() {
                    if head.is_empty() {
                        continue;
                    }
                    self.line = head;
                    return Ok(Some(&self.line));
                }
                self.partial.extend_from_slice(&head);
                self.partial_returned = true;
                return Ok(Some(&self.partial));
            }
            if self.partial.len() + self.chunk.len() > self.max_line {
                bail!("a line of the answer is longer than {} bytes (--max-piece-bytes)", self.max_line);
            }
            self.partial.extend_from_slice(&std::mem::take(&mut self.chunk));
            if self.done {
                if self.partial.is_empty() {
                    return Ok(None);
                }
                self.partial_returned = true;
                return Ok(Some(&self.partial));
            }
            match self.body.chunk().await? {
                Some(chunk) => self.chunk = chunk,
                None => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that yields `chunks`, as a read-ahead one does.
    fn body_of(chunks: &[&str]) -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel(chunks.len() + 1);
        for c in chunks {
            tx.try_send(Ok(Some(Bytes::copy_from_slice(c.as_bytes())))).unwrap();
        }
        tx.try_send(Ok(None)).unwrap();
        let reader = AbortOnDrop(tokio::spawn(async {}));
        Body {
            source: Source::Ahead { chunks: rx, _reader: reader },
            timeout: Duration::from_secs(1),
            content_type: None,
        }
    }

    async fn all_lines(chunks: &[&str], max_line: usize) -> anyhow::Result<Vec<String>> {
        let mut lines = body_of(chunks).lines(max_line);
        let mut out = Vec::new();
        while let Some(line) = lines.next().await? {
            out.push(String::from_utf8(line.to_vec())?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn lines_inside_and_across_chunks() {
        let want = ["ab", "c", "defgh", "ij", "k"];
        for chunks in [
            &["ab\nc\ndefgh\nij\nk"][..],
            &["ab\nc\nde", "fg", "h\nij\n", "k"],
            &["a", "b", "\n", "c\n", "\n\ndefgh", "\nij\nk\n"],
            &["ab\n\nc", "\ndefgh\n", "ij", "\nk", "\n\n"],
        ] {
            assert_eq!(all_lines(chunks, 10).await.unwrap(), want, "{chunks:?}");
        }
        assert!(all_lines(&[], 10).await.unwrap().is_empty());
        assert!(all_lines(&["\n\n", "\n"], 10).await.unwrap().is_empty());
        assert_eq!(all_lines(&["12345", "678\n"], 8).await.unwrap(), ["12345678"]);
        for chunks in [&["12345", "6789\n"][..], &["123456789\n"], &["1234", "56789"]] {
            let err = all_lines(chunks, 8).await.unwrap_err();
            assert!(err.to_string().contains("longer than 8 bytes"), "{err}");
        }
    }
}
