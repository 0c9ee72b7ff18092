//! The JSON text of the two shapes and the bytes their AEAD and signature cover.
//!
//! The field order of the structs is the order on the wire (serde writes fields in
//! declaration order, as `JSON.stringify` writes an object's keys in insertion order), so two
//! implementations that build the same object write the same text.

use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Serialize};

use super::{
    ContentKind, EnvelopeError, MAX_ENVELOPE, MAX_SAFE_INTEGER, Malformation, SealedKind, VERSION,
    error::malformed,
};

/// Domain separation of the sealed shape's header bytes.
const SEALED_DOMAIN: &str = "helix-sealed-v2";
/// Domain separation of the content shape's header bytes.
const CONTENT_DOMAIN: &str = "helix-content-v2";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SealedWire {
    pub v: u8,
    pub kind: SealedKind,
    pub sender: String,
    pub recipient: String,
    pub context: String,
    pub seq: u64,
    pub expires_at_ms: u64,
    /// The ephemeral X25519 public key.
    pub epk: String,
    pub nonce: String,
    pub ct: String,
    pub sig: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ContentWire {
    pub v: u8,
    pub kind: ContentKind,
    pub hub: String,
    pub context: String,
    pub seq: u64,
    pub nonce: String,
    pub ct: String,
    pub sig: String,
}

/// `domain`, then each field preceded by a newline.
fn join(domain: &str, fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(domain.as_bytes());
    for field in fields {
        out.push(b'\n');
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// Refuses what is too long, not an object with a `v`, or not version 2, before the shape is
/// parsed, so a future version gets its own message rather than a parser's.
fn check_outer(text: &str) -> Result<(), EnvelopeError> {
    if text.len() > MAX_ENVELOPE {
        return Err(EnvelopeError::TooLarge(text.len()));
    }
    #[derive(Deserialize)]
    struct Outer {
        v: u64,
    }
    let outer: Outer =
        serde_json::from_str(text).map_err(|e| EnvelopeError::from(Malformation::Json(e)))?;
    if outer.v != u64::from(VERSION) {
        return Err(EnvelopeError::Version(outer.v));
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, EnvelopeError> {
    check_outer(text)?;
    serde_json::from_str(text).map_err(|e| EnvelopeError::from(Malformation::Json(e)))
}

fn check_seq(seq: u64) -> Result<(), EnvelopeError> {
    if seq > MAX_SAFE_INTEGER {
        return Err(malformed("seq is over 2^53 - 1"));
    }
    Ok(())
}

fn to_text<T: Serialize>(wire: &T) -> Result<String, EnvelopeError> {
    serde_json::to_string(wire).map_err(|e| EnvelopeError::from(Malformation::Json(e)))
}

impl SealedWire {
    pub fn header_bytes(&self) -> Vec<u8> {
        join(
            SEALED_DOMAIN,
            &[
                &self.v.to_string(),
                self.kind.name(),
                &self.sender,
                &self.recipient,
                &self.context,
                &self.seq.to_string(),
                &self.expires_at_ms.to_string(),
                &self.epk,
                &self.nonce,
            ],
        )
    }

    pub fn parse(text: &str) -> Result<Self, EnvelopeError> {
        let wire: Self = parse(text)?;
        check_seq(wire.seq)?;
        if wire.expires_at_ms > MAX_SAFE_INTEGER {
            return Err(malformed("expires_at_ms is over 2^53 - 1"));
        }
        Ok(wire)
    }

    pub fn to_text(&self) -> Result<String, EnvelopeError> {
        to_text(self)
    }
}

impl ContentWire {
    pub fn header_bytes(&self) -> Vec<u8> {
        join(
            CONTENT_DOMAIN,
            &[
                &self.v.to_string(),
                self.kind.name(),
                &self.hub,
                &self.context,
                &self.seq.to_string(),
                &self.nonce,
            ],
        )
    }

    pub fn parse(text: &str) -> Result<Self, EnvelopeError> {
        let wire: Self = parse(text)?;
        check_seq(wire.seq)?;
        Ok(wire)
    }

    pub fn to_text(&self) -> Result<String, EnvelopeError> {
        to_text(self)
    }
}

/// A base64url (no padding) field.
pub(super) fn decode(field: &str, value: &str) -> Result<Vec<u8>, EnvelopeError> {
    BASE64URL_NOPAD
        .decode(value.as_bytes())
        .map_err(|_| malformed(format!("{field} is not base64url")))
}

/// A base64url field of exactly `N` bytes.
pub(super) fn decode_fixed<const N: usize>(
    field: &str,
    value: &str,
) -> Result<[u8; N], EnvelopeError> {
    decode(field, value)?
        .try_into()
        .map_err(|_| malformed(format!("{field} is not {N} bytes")))
}
