//! Envelope v2: what crosses the cloud route when every paired device reads every command.
//!
//! Two shapes, both the text of one JSON object (format and golden vectors:
//! docs/protocol.md, "Envelopes v2", and `proto/vectors/envelope-v2.json`):
//! - **Sealed** to one recipient, signed by the sender: a command from a device to its hub, a
//!   command's content key from the hub to each device paired when the command arrived, and a
//!   pairing request (device to hub) and its answer (hub to device). A
//!   fresh X25519 key per envelope agrees with the recipient's key (its iroh ed25519 key mapped
//!   to X25519, as libsodium's `crypto_sign_ed25519_pk_to_curve25519`); HKDF-SHA256 gives a
//!   ChaCha20-Poly1305 key; the header is the associated data; the sender's ed25519 key signs
//!   header and ciphertext.
//! - **Content** under a command's [`ContentKey`], signed by the hub: the command's prompt and
//!   its events, encrypted once for all devices. The header binds each to its kind, hub,
//!   command and seq, and the hub's signature means a device holding the key still cannot
//!   forge an event.
//!
//! Randomness (ephemeral keys, nonces, content keys) comes in through [`SealRandom`] and the
//! `*_with` functions so that golden vectors can fix it; the plain functions draw it fresh.
//! Numbers are at most 2^53 − 1 ([`MAX_SAFE_INTEGER`]) so that a JavaScript client reads and
//! writes them exactly.
//!
//! Files: `sealed` and `content` (the two shapes), `crypto` (the primitives they compose),
//! `wire` (the JSON text and the header bytes), `error` (the refusals).

use std::fmt;

use iroh::PublicKey;
use serde::{Deserialize, Serialize};

mod content;
mod crypto;
mod error;
mod sealed;
mod wire;

pub use content::{open_content, seal_content, seal_content_with};

pub use error::{EnvelopeError, Malformation};
pub use sealed::{open_sealed, seal, seal_with, unwrap_content_key, wrap_content_key};

/// The format version both shapes carry in `v`.
pub const VERSION: u8 = 2;
/// Largest plaintext sealed or accepted (a prompt is at most 1 MiB; events are smaller).
pub const MAX_PLAINTEXT: usize = crate::MAX_CONTENT_BYTES + 64 * 1024;
/// Largest envelope text accepted: base64url makes the ciphertext 4/3 of the plaintext, and
/// the header fields add well under 1 KiB.
pub const MAX_ENVELOPE: usize = MAX_PLAINTEXT / 3 * 4 + 4096;
/// Largest integer in a header: JavaScript's `Number.MAX_SAFE_INTEGER`.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// What a sealed envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealedKind {
    /// A command, from a device to a hub.
    Command,
    /// A command's content key, from the hub to one device.
    ContentKey,
    /// A device asks a hub to pair, with the one-time secret of a pairing ticket (context: the
    /// pairing id).
    PairingRequest,
    /// The hub's answer to a pairing request, to the device that asked (context: the pairing
    /// id).
    PairingAnswer,
}

/// What a content envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentKind {
    /// The command as the hub accepted it (seq 0), for every device's history.
    Prompt,
    /// One event of the command (seq ≥ 1, the journal's seq).
    Event,
}

impl SealedKind {
    /// The kind's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::ContentKey => "content_key",
            Self::PairingRequest => "pairing_request",
            Self::PairingAnswer => "pairing_answer",
        }
    }
}

impl ContentKind {
    fn name(self) -> &'static str {
        match self {
            Self::Prompt => "prompt",
            Self::Event => "event",
        }
    }
}

/// The readable part of a sealed envelope (besides sender and recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedHeader {
    pub kind: SealedKind,
    /// The command id.
    pub context: String,
    /// 0 for the kinds defined so far.
    pub seq: u64,
    /// Refused from this time on (ms since the epoch); 0: never expires.
    pub expires_at_ms: u64,
}

/// An opened sealed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedSealed {
    pub sender: PublicKey,
    pub header: SealedHeader,
    pub plaintext: Vec<u8>,
}

/// What a content envelope must be to be accepted: the caller says what it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentHeader {
    pub kind: ContentKind,
    /// The hub that signs the command's content.
    pub hub: PublicKey,
    /// The command id.
    pub context: String,
    pub seq: u64,
}

/// A command's symmetric key: 32 random bytes, created by the hub per command.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey([u8; 32]);

impl ContentKey {
    pub fn generate() -> Self {
        Self(rand::random())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(<redacted>)")
    }
}

/// The random inputs of one sealed envelope.
#[derive(Clone)]
pub struct SealRandom {
    /// The ephemeral X25519 secret (clamped when used).
    pub ephemeral: [u8; 32],
    pub nonce: [u8; 12],
}

impl SealRandom {
    pub fn fresh() -> Self {
        Self {
            ephemeral: rand::random(),
            nonce: rand::random(),
        }
    }
}

impl fmt::Debug for SealRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealRandom(<redacted>)")
    }
}

#[cfg(test)]
mod tests;
