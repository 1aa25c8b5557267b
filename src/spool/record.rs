//! One spool record on disk: encoding, decoding and checksum.
//!
//! ```text
//! offset  size  field
//! 0       4     payload length N, u32 little-endian
//! 4       4     CRC32C of the N payload bytes, u32 little-endian
//! 8       N     payload:
//!   +0    8       sequence number, u64 LE
//!   +8    8       received_at, microseconds since the Unix epoch, i64 LE
//!   +16   8       signature timestamp `t` (seconds), i64 LE
//!   +24   1       flags: bit 0 = signature verified, bit 1 = event key present
//!   +25   16      event key (SHA-256 prefix of the event id; zero when absent)
//!   +41   1       remote address length A (0 = unknown)
//!   +42   A       remote address, UTF-8 "ip:port"
//!   +42+A ...     the raw body, exactly as received
//! ```

use std::net::SocketAddr;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::dedup::EventKey;
use super::{Delivery, Record, Seq};

pub(super) const HEADER_LEN: usize = 8;
const FIXED_PAYLOAD: usize = 42;
/// The smallest record: header and fixed payload, no address, an empty body.
pub(super) const MIN_RECORD_LEN: u64 = (HEADER_LEN + FIXED_PAYLOAD) as u64;
/// A length above this is corruption, not a record (bodies are capped far below it).
pub(super) const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

const FLAG_VERIFIED: u8 = 1;
const FLAG_KEY: u8 = 2;

/// The encoded size of a delivery's record.
pub(super) fn encoded_len(delivery: &Delivery) -> usize {
    HEADER_LEN + FIXED_PAYLOAD + addr_text(delivery).len() + delivery.body.len()
}

fn addr_text(delivery: &Delivery) -> String {
    delivery.remote_addr.map(|a| a.to_string()).unwrap_or_default()
}

/// Appends the record for `delivery` at `seq` to `out`.
pub(super) fn encode(seq: Seq, delivery: &Delivery, out: &mut Vec<u8>) {
    let addr = addr_text(delivery);
    let addr = &addr.as_bytes()[..addr.len().min(255)];
    let payload_len = FIXED_PAYLOAD + addr.len() + delivery.body.len();
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.0.to_le_bytes());
    out.extend_from_slice(&delivery.received_at.timestamp_micros().to_le_bytes());
    out.extend_from_slice(&delivery.signature_timestamp.to_le_bytes());
    let flags = FLAG_VERIFIED | if delivery.event_key.is_some() { FLAG_KEY } else { 0 };
    out.push(flags);
    out.extend_from_slice(&delivery.event_key.map(|k| k.0).unwrap_or([0; 16]));
    out.push(addr.len() as u8);
    out.extend_from_slice(addr);
    out.extend_from_slice(&delivery.body);
    let crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum DecodeError {
    #[error("the record header is cut short")]
    ShortHeader,
    #[error("the record claims {0} payload bytes, more than any record can hold")]
    BadLength(usize),
    #[error("the record is cut short")]
    ShortPayload,
    #[error("the record's checksum does not match its contents")]
    Checksum,
    #[error("the record's fields are inconsistent")]
    Malformed,
}

/// Reads a header: the payload length and expected checksum.
pub(super) fn decode_header(bytes: &[u8]) -> Result<(usize, u32), DecodeError> {
    let header: [u8; HEADER_LEN] =
        bytes.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(DecodeError::ShortHeader)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(FIXED_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return Err(DecodeError::BadLength(len));
    }
    Ok((len, crc))
}

/// Checks and decodes a payload whose header gave `crc`.
pub(super) fn decode_payload(payload: &[u8], crc: u32) -> Result<Record, DecodeError> {
    if crc32c::crc32c(payload) != crc {
        return Err(DecodeError::Checksum);
    }
    let u64_at = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().unwrap_or([0; 8]));
    let seq = Seq(u64_at(0));
    let received_at = DateTime::<Utc>::from_timestamp_micros(u64_at(8) as i64).ok_or(DecodeError::Malformed)?;
    let signature_timestamp = u64_at(16) as i64;
    let flags = payload[24];
    let mut key = [0; 16];
    key.copy_from_slice(&payload[25..41]);
    let event_key = (flags & FLAG_KEY != 0).then_some(EventKey(key));
    let addr_len = payload[41] as usize;
    let addr = payload.get(FIXED_PAYLOAD..FIXED_PAYLOAD + addr_len).ok_or(DecodeError::Malformed)?;
    let remote_addr = std::str::from_utf8(addr).ok().and_then(|a| a.parse::<SocketAddr>().ok());
    let body = Bytes::copy_from_slice(&payload[FIXED_PAYLOAD + addr_len..]);
    let delivery = Delivery { received_at, remote_addr, signature_timestamp, event_key, body };
    Ok(Record { seq, delivery })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(body: &str) -> Delivery {
        Delivery {
            received_at: DateTime::from_timestamp_micros(1_763_800_000_123_456).unwrap(),
            remote_addr: Some("10.1.2.3:4567".parse().unwrap()),
            signature_timestamp: 1_763_800_000,
            event_key: Some(EventKey::of("EVNT-1")),
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    fn roundtrip(bytes: &[u8]) -> Result<Record, DecodeError> {
        let (len, crc) = decode_header(bytes)?;
        let payload = bytes.get(HEADER_LEN..HEADER_LEN + len).ok_or(DecodeError::ShortPayload)?;
        decode_payload(payload, crc)
    }

    #[test]
    fn a_record_decodes_to_what_was_encoded() {
        let d = delivery(r#"{"id":"EVNT-1"}"#);
        let mut out = Vec::new();
        encode(Seq(42), &d, &mut out);
        assert_eq!(out.len(), encoded_len(&d));
        let r = roundtrip(&out).unwrap();
        assert_eq!(r.seq, Seq(42));
        assert_eq!(r.delivery.received_at, d.received_at);
        assert_eq!(r.delivery.remote_addr, d.remote_addr);
        assert_eq!(r.delivery.signature_timestamp, d.signature_timestamp);
        assert_eq!(r.delivery.event_key, d.event_key);
        assert_eq!(r.delivery.body, d.body);
    }

    #[test]
    fn no_address_and_no_key_roundtrip() {
        let d = Delivery { remote_addr: None, event_key: None, ..delivery("not json") };
        let mut out = Vec::new();
        encode(Seq(1), &d, &mut out);
        let r = roundtrip(&out).unwrap();
        assert_eq!((r.delivery.remote_addr, r.delivery.event_key), (None, None));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut out = Vec::new();
        encode(Seq(7), &delivery("{}"), &mut out);
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            assert!(roundtrip(&bad).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn cut_records_are_short_not_garbage() {
        let mut out = Vec::new();
        encode(Seq(7), &delivery("{}"), &mut out);
        assert_eq!(roundtrip(&out[..5]).unwrap_err(), DecodeError::ShortHeader);
        assert_eq!(roundtrip(&out[..out.len() - 1]).unwrap_err(), DecodeError::ShortPayload);
    }
}
