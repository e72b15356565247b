//! The byte layout of the embedded store's records (little-endian, length-prefixed).
//!
//! A current value (table `kv`, by key): `create_revision i64 | mod_revision i64 | value`.
//! A history event (table `history`, by revision): `type u8 | key_len u32 | key | create_revision i64 |
//! value_len u32 | value | has_prev u8 [| prev_create i64 | prev_mod i64 | prev_len u32 | prev_value]`.
//! The event's revision is its table key; a previous value always has the event's key.

use bytes::Bytes;

use crate::{Event, EventType, KeyValue, Result, Revision, StorageError};

pub(super) fn encode_kv(create_revision: Revision, mod_revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

pub(super) fn decode_kv(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    let mut r = Reader(bytes);
    let create_revision = r.i64()?;
    let mod_revision = r.i64()?;
    Ok(KeyValue { key: key.to_string(), value: Bytes::copy_from_slice(r.0), create_revision, mod_revision })
}

pub(super) fn encode_event(event: &Event) -> Vec<u8> {
    let key = event.kv.key.as_bytes();
    let prev_len = event.prev.as_ref().map_or(0, |p| 20 + p.value.len());
    let mut out = Vec::with_capacity(1 + 4 + key.len() + 8 + 4 + event.kv.value.len() + 1 + prev_len);
    out.push(match event.event_type {
        EventType::Put => 0,
        EventType::Delete => 1,
    });
    put_bytes(&mut out, key);
    out.extend_from_slice(&event.kv.create_revision.to_le_bytes());
    put_bytes(&mut out, &event.kv.value);
    match &event.prev {
        None => out.push(0),
        Some(prev) => {
            out.push(1);
            out.extend_from_slice(&prev.create_revision.to_le_bytes());
            out.extend_from_slice(&prev.mod_revision.to_le_bytes());
            put_bytes(&mut out, &prev.value);
        }
    }
    out
}

/// Just the key of an encoded event, to filter history without decoding values.
pub(super) fn event_key(bytes: &[u8]) -> Result<&str> {
    let mut r = Reader(bytes);
    r.u8()?;
    r.str()
}

pub(super) fn decode_event(revision: Revision, bytes: &[u8]) -> Result<Event> {
    let mut r = Reader(bytes);
    let event_type = match r.u8()? {
        0 => EventType::Put,
        1 => EventType::Delete,
        other => return Err(corrupt(&format!("event type {other}"))),
    };
    let key = r.str()?.to_string();
    let create_revision = r.i64()?;
    let value = Bytes::copy_from_slice(r.bytes()?);
    let prev = match r.u8()? {
        0 => None,
        _ => {
            let create_revision = r.i64()?;
            let mod_revision = r.i64()?;
            let value = Bytes::copy_from_slice(r.bytes()?);
            Some(KeyValue { key: key.clone(), value, create_revision, mod_revision })
        }
    };
    Ok(Event { event_type, kv: KeyValue { key, value, create_revision, mod_revision: revision }, prev })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Values are at most MAX_VALUE_BYTES and keys are short, far below u32::MAX.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Internal(format!("embedded store: corrupt record ({what})"))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| corrupt("integer"))?;
        Ok(i64::from_le_bytes(bytes))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len: [u8; 4] = self.take(4)?.try_into().map_err(|_| corrupt("length"))?;
        self.take(u32::from_le_bytes(len) as usize)
    }

    fn str(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| corrupt("key is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &'static str, create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from_static(value.as_bytes()),
            create_revision: create,
            mod_revision: modified,
        }
    }

    #[test]
    fn round_trips() {
        let stored = kv("/a/b", "value", 3, 7);
        assert_eq!(decode_kv("/a/b", &encode_kv(3, 7, b"value")).ok(), Some(stored.clone()));
        let events = [
            Event { event_type: EventType::Put, kv: kv("/a/b", "new", 3, 9), prev: Some(stored.clone()) },
            Event { event_type: EventType::Put, kv: kv("/a/c", "first", 9, 9), prev: None },
            Event { event_type: EventType::Delete, kv: kv("/a/b", "", 0, 9), prev: Some(stored) },
        ];
        for event in events {
            let bytes = encode_event(&event);
            assert_eq!(event_key(&bytes).ok(), Some(event.kv.key.as_str()));
            assert_eq!(decode_event(9, &bytes).ok(), Some(event));
            assert!(decode_event(9, &bytes[..bytes.len() - 1]).is_err(), "truncated records are rejected");
        }
    }
}
