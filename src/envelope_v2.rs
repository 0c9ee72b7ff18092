//! Envelope v2: what crosses the cloud route when every paired device reads every command.
//!
//! Two shapes, both the text of one JSON object (format and golden vectors:
//! docs/protocol.md, "Envelopes v2", and `proto/vectors/envelope-v2.json`):
//! - **Sealed** to one recipient, signed by the sender: a command from a device to its hub, and
//!   a command's content key from the hub to each device paired when the command arrived. A
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

use std::fmt;

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use curve25519_dalek::MontgomeryPoint;
use data_encoding::BASE64URL_NOPAD;
use hkdf::Hkdf;
use iroh::{PublicKey, SecretKey, Signature};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

mod error;
mod wire;

use error::malformed;
pub use error::{EnvelopeError, Malformation};
use wire::{ContentWire, SealedWire, decode_fixed};

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
    fn name(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::ContentKey => "content_key",
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

fn check_int(field: &str, value: u64) -> Result<(), EnvelopeError> {
    if value > MAX_SAFE_INTEGER {
        return Err(malformed(format!("{field} is over 2^53 - 1")));
    }
    Ok(())
}

/// The X25519 key of an ed25519 public key.
fn x25519_public(key: &PublicKey) -> Result<MontgomeryPoint, EnvelopeError> {
    ed25519_dalek::VerifyingKey::from_bytes(key.as_bytes())
        .map(|k| k.to_montgomery())
        .map_err(|_| malformed("recipient key is not a valid ed25519 key"))
}

/// The X25519 secret scalar of an ed25519 secret key (unclamped; `mul_clamped` clamps).
fn x25519_secret(key: &SecretKey) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&key.to_bytes()).to_scalar_bytes()
}

/// HKDF-SHA256: salt `epk ‖ recipient's X25519 key`, the shared secret as input key, the
/// header bytes as info.
fn sealing_key(
    shared: &MontgomeryPoint,
    epk: &[u8; 32],
    recipient: &MontgomeryPoint,
    header: &[u8],
) -> [u8; 32] {
    let mut salt = Vec::with_capacity(64);
    salt.extend_from_slice(epk);
    salt.extend_from_slice(recipient.as_bytes());
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes());
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's output limit, so this cannot fail.
    let _ = hk.expand(header, &mut key);
    key
}

fn encrypt(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    // ChaCha20-Poly1305 fails only past 256 GiB of plaintext; MAX_PLAINTEXT is checked first.
    ChaCha20Poly1305::new(key.into())
        .encrypt(&Nonce::from(*nonce), Payload { msg, aad })
        .unwrap_or_default()
}

fn decrypt(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    ChaCha20Poly1305::new(key.into())
        .decrypt(&Nonce::from(*nonce), Payload { msg, aad })
        .map_err(|_| EnvelopeError::Undecryptable)
}

fn signed_bytes(header: &[u8], ct: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(header.len() + ct.len());
    signed.extend_from_slice(header);
    signed.extend_from_slice(ct);
    signed
}

fn verify(signer: &PublicKey, header: &[u8], ct: &[u8], sig: &str) -> Result<(), EnvelopeError> {
    let sig: [u8; 64] = BASE64URL_NOPAD
        .decode(sig.as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(EnvelopeError::BadSignature)?;
    signer
        .verify(&signed_bytes(header, ct), &Signature::from_bytes(&sig))
        .map_err(|_| EnvelopeError::BadSignature)
}

/// Seals `plaintext` for `recipient`, signed by `sender`, with fresh randomness.
pub fn seal(
    sender: &SecretKey,
    recipient: &PublicKey,
    header: &SealedHeader,
    plaintext: &[u8],
) -> Result<String, EnvelopeError> {
    seal_with(sender, recipient, header, plaintext, &SealRandom::fresh())
}

/// [`seal`] with the given randomness (golden vectors; never reuse one).
pub fn seal_with(
    sender: &SecretKey,
    recipient: &PublicKey,
    header: &SealedHeader,
    plaintext: &[u8],
    random: &SealRandom,
) -> Result<String, EnvelopeError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EnvelopeError::TooLarge(plaintext.len()));
    }
    check_int("seq", header.seq)?;
    check_int("expires_at_ms", header.expires_at_ms)?;
    let recipient_x = x25519_public(recipient)?;
    let epk = MontgomeryPoint::mul_base_clamped(random.ephemeral).to_bytes();
    let shared = recipient_x.mul_clamped(random.ephemeral);
    let mut wire = SealedWire {
        v: VERSION,
        kind: header.kind,
        sender: sender.public().to_string(),
        recipient: recipient.to_string(),
        context: header.context.clone(),
        seq: header.seq,
        expires_at_ms: header.expires_at_ms,
        epk: BASE64URL_NOPAD.encode(&epk),
        nonce: BASE64URL_NOPAD.encode(&random.nonce),
        ct: String::new(),
        sig: String::new(),
    };
    let aad = wire.header_bytes();
    let key = sealing_key(&shared, &epk, &recipient_x, &aad);
    let ct = encrypt(&key, &random.nonce, &aad, plaintext);
    wire.sig = BASE64URL_NOPAD.encode(&sender.sign(&signed_bytes(&aad, &ct)).to_bytes());
    wire.ct = BASE64URL_NOPAD.encode(&ct);
    wire.to_text()
}

/// Opens a sealed envelope addressed to `recipient`, from a sender `sender_allowed` accepts,
/// unexpired at `now_ms`.
pub fn open_sealed(
    recipient: &SecretKey,
    text: &str,
    now_ms: u64,
    sender_allowed: impl Fn(&PublicKey) -> bool,
) -> Result<OpenedSealed, EnvelopeError> {
    let wire = SealedWire::parse(text)?;
    let me = recipient.public();
    if wire.recipient != me.to_string() {
        return Err(EnvelopeError::NotForUs);
    }
    let sender: PublicKey = wire
        .sender
        .parse()
        .map_err(|_| malformed("sender is not a key"))?;
    if !sender_allowed(&sender) {
        return Err(EnvelopeError::UnknownSender(sender.fmt_short().to_string()));
    }
    let ct = wire::decode("ct", &wire.ct)?;
    let aad = wire.header_bytes();
    verify(&sender, &aad, &ct, &wire.sig)?;
    if wire.expires_at_ms != 0 && wire.expires_at_ms <= now_ms {
        return Err(EnvelopeError::Expired);
    }
    let epk: [u8; 32] = decode_fixed("epk", &wire.epk)?;
    let nonce: [u8; 12] = decode_fixed("nonce", &wire.nonce)?;
    let shared = MontgomeryPoint(epk).mul_clamped(x25519_secret(recipient));
    let key = sealing_key(&shared, &epk, &x25519_public(&me)?, &aad);
    let plaintext = decrypt(&key, &nonce, &aad, &ct)?;
    Ok(OpenedSealed {
        sender,
        header: SealedHeader {
            kind: wire.kind,
            context: wire.context,
            seq: wire.seq,
            expires_at_ms: wire.expires_at_ms,
        },
        plaintext,
    })
}

/// The hub wraps a command's content key for one device (never expires: history stays
/// readable).
pub fn wrap_content_key(
    hub: &SecretKey,
    device: &PublicKey,
    command_id: &str,
    key: &ContentKey,
    random: &SealRandom,
) -> Result<String, EnvelopeError> {
    let header = SealedHeader {
        kind: SealedKind::ContentKey,
        context: command_id.to_owned(),
        seq: 0,
        expires_at_ms: 0,
    };
    seal_with(hub, device, &header, key.as_bytes(), random)
}

/// A device unwraps the content key of `command_id`, sealed to it by `hub`.
pub fn unwrap_content_key(
    device: &SecretKey,
    hub: &PublicKey,
    command_id: &str,
    text: &str,
) -> Result<ContentKey, EnvelopeError> {
    let opened = open_sealed(device, text, 0, |k| k == hub)?;
    if opened.header.kind != SealedKind::ContentKey {
        return Err(EnvelopeError::WrongKind {
            expected: SealedKind::ContentKey.name(),
            found: opened.header.kind.name(),
        });
    }
    if opened.header.context != command_id {
        return Err(EnvelopeError::WrongCommand {
            expected: command_id.to_owned(),
            found: opened.header.context,
        });
    }
    let bytes: [u8; 32] = opened
        .plaintext
        .try_into()
        .map_err(|_| malformed("a content key is 32 bytes"))?;
    Ok(ContentKey(bytes))
}

/// The hub encrypts one piece of a command's content under its key and signs it, with a
/// fresh nonce.
pub fn seal_content(
    hub: &SecretKey,
    key: &ContentKey,
    kind: ContentKind,
    context: &str,
    seq: u64,
    plaintext: &[u8],
) -> Result<String, EnvelopeError> {
    seal_content_with(hub, key, kind, context, seq, plaintext, &rand::random())
}

/// [`seal_content`] with the given nonce (golden vectors; never reuse one under a key).
pub fn seal_content_with(
    hub: &SecretKey,
    key: &ContentKey,
    kind: ContentKind,
    context: &str,
    seq: u64,
    plaintext: &[u8],
    nonce: &[u8; 12],
) -> Result<String, EnvelopeError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EnvelopeError::TooLarge(plaintext.len()));
    }
    check_int("seq", seq)?;
    let mut wire = ContentWire {
        v: VERSION,
        kind,
        hub: hub.public().to_string(),
        context: context.to_owned(),
        seq,
        nonce: BASE64URL_NOPAD.encode(nonce),
        ct: String::new(),
        sig: String::new(),
    };
    let aad = wire.header_bytes();
    let ct = encrypt(key.as_bytes(), nonce, &aad, plaintext);
    wire.sig = BASE64URL_NOPAD.encode(&hub.sign(&signed_bytes(&aad, &ct)).to_bytes());
    wire.ct = BASE64URL_NOPAD.encode(&ct);
    wire.to_text()
}

/// Opens a content envelope, refusing it unless it is exactly `expect` (kind, hub, command
/// and seq) and signed by that hub.
pub fn open_content(
    key: &ContentKey,
    expect: &ContentHeader,
    text: &str,
) -> Result<Vec<u8>, EnvelopeError> {
    let wire = ContentWire::parse(text)?;
    if wire.kind != expect.kind {
        return Err(EnvelopeError::WrongKind {
            expected: expect.kind.name(),
            found: wire.kind.name(),
        });
    }
    if wire.hub != expect.hub.to_string() {
        return Err(EnvelopeError::WrongSigner);
    }
    if wire.context != expect.context {
        return Err(EnvelopeError::WrongCommand {
            expected: expect.context.clone(),
            found: wire.context,
        });
    }
    if wire.seq != expect.seq {
        return Err(EnvelopeError::WrongSeq {
            expected: expect.seq,
            found: wire.seq,
        });
    }
    let ct = wire::decode("ct", &wire.ct)?;
    let aad = wire.header_bytes();
    verify(&expect.hub, &aad, &ct, &wire.sig)?;
    let nonce: [u8; 12] = decode_fixed("nonce", &wire.nonce)?;
    decrypt(key.as_bytes(), &nonce, &aad, &ct)
}

#[cfg(test)]
mod tests;
