//! End-to-end-encrypted, signed envelopes: how commands and output events cross the cloud
//! route (the Supabase tables) without Supabase ever reading them.
//!
//! Construction (standard parts, from the RustCrypto and dalek crates; nothing home-made below
//! the composition):
//! - **Encryption to the recipient**: a fresh X25519 key per envelope agrees with the
//!   recipient's X25519 key (its iroh ed25519 key mapped to X25519, as libsodium's
//!   `crypto_sign_ed25519_pk_to_curve25519` does); HKDF-SHA256 turns the shared secret into a
//!   ChaCha20-Poly1305 key; the header is the AEAD's associated data.
//! - **Signature by the sender**: the sender's iroh (ed25519) key signs the header and the
//!   ciphertext, so the recipient knows which device wrote it and that nothing was changed.
//!
//! The header (kind, sender, recipient, context id, seq, expiry) stays readable so the cloud
//! route can deliver it; opening checks, in order: version, addressed to us, sender allowed, signature,
//! expiry, decryption. Replays (the same context and seq twice) are the caller's to refuse: it
//! knows what it has seen.

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

/// The envelope format version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Largest plaintext sealed or accepted (a prompt is at most 1 MiB; events are smaller).
pub const MAX_PLAINTEXT: usize = crate::MAX_CONTENT_BYTES + 64 * 1024;
/// Domain separation for the key derivation and the signature.
const DOMAIN: &[u8] = b"helix-envelope-v1";

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeKind {
    /// A command, from a device to a hub.
    Command,
    /// One or more events of a command, from the hub to a device.
    Event,
}

/// The readable part of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: EnvelopeKind,
    /// The command id the envelope belongs to.
    pub context: String,
    /// 0 for a command; the first event's seq for events.
    pub seq: u64,
    /// After this (ms since the epoch) the recipient refuses it.
    pub expires_at_ms: i64,
}

/// An opened envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub sender: PublicKey,
    pub header: Header,
    pub plaintext: Vec<u8>,
}

/// Why an envelope was refused. The texts are what a hub records as a command's reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Malformed(#[from] Malformation),
    #[error("envelope version {0} is not supported (this side reads version {ENVELOPE_VERSION})")]
    Version(u8),
    #[error("envelope is addressed to another recipient")]
    NotForUs,
    #[error("envelope sender {0} is not a paired device")]
    UnknownSender(String),
    #[error("forged envelope: the signature does not match its sender and contents")]
    BadSignature,
    #[error("expired envelope")]
    Expired,
    #[error("envelope does not decrypt with this key")]
    Undecryptable,
    #[error("envelope of {0} bytes is over the limit")]
    TooLarge(usize),
}

/// What is wrong with a malformed envelope.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Malformation {
    /// A part that does not hold what it must; the text says which.
    #[error("{0}")]
    Part(String),
    /// Not an envelope's JSON (or, sealing, not writable as JSON).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

fn malformed(part: impl Into<String>) -> EnvelopeError {
    EnvelopeError::Malformed(Malformation::Part(part.into()))
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    kind: EnvelopeKind,
    sender: String,
    recipient: String,
    context: String,
    seq: u64,
    expires_at_ms: i64,
    /// The ephemeral X25519 public key.
    epk: String,
    nonce: String,
    ct: String,
    sig: String,
}

impl Wire {
    /// The bytes the AEAD authenticates and (with the ciphertext) the signature covers.
    fn header_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(DOMAIN);
        for field in [
            &self.v.to_string(),
            kind_name(self.kind),
            &self.sender,
            &self.recipient,
            &self.context,
            &self.seq.to_string(),
            &self.expires_at_ms.to_string(),
            &self.epk,
            &self.nonce,
        ] {
            out.push(b'\n');
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

fn kind_name(kind: EnvelopeKind) -> &'static str {
    match kind {
        EnvelopeKind::Command => "command",
        EnvelopeKind::Event => "event",
    }
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

fn derive_key(
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

/// Seals `plaintext` for `recipient`, signed by `sender`.
pub fn seal(
    sender: &SecretKey,
    recipient: &PublicKey,
    header: &Header,
    plaintext: &[u8],
) -> Result<String, EnvelopeError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EnvelopeError::TooLarge(plaintext.len()));
    }
    let recipient_x = x25519_public(recipient)?;
    let ephemeral: [u8; 32] = rand::random();
    let epk = MontgomeryPoint::mul_base_clamped(ephemeral).to_bytes();
    let shared = recipient_x.mul_clamped(ephemeral);
    let nonce: [u8; 12] = rand::random();
    let mut wire = Wire {
        v: ENVELOPE_VERSION,
        kind: header.kind,
        sender: sender.public().to_string(),
        recipient: recipient.to_string(),
        context: header.context.clone(),
        seq: header.seq,
        expires_at_ms: header.expires_at_ms,
        epk: BASE64URL_NOPAD.encode(&epk),
        nonce: BASE64URL_NOPAD.encode(&nonce),
        ct: String::new(),
        sig: String::new(),
    };
    let aad = wire.header_bytes();
    let key = derive_key(&shared, &epk, &recipient_x, &aad);
    let ct = ChaCha20Poly1305::new(&key.into())
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| malformed("encryption failed"))?;
    let mut signed = aad;
    signed.extend_from_slice(&ct);
    wire.sig = BASE64URL_NOPAD.encode(&sender.sign(&signed).to_bytes());
    wire.ct = BASE64URL_NOPAD.encode(&ct);
    serde_json::to_string(&wire).map_err(|e| Malformation::Json(e).into())
}

/// Opens an envelope addressed to `recipient`, from a sender `sender_allowed` accepts, unexpired
/// at `now_ms`.
pub fn open(
    recipient: &SecretKey,
    text: &str,
    now_ms: i64,
    sender_allowed: impl Fn(&PublicKey) -> bool,
) -> Result<Opened, EnvelopeError> {
    if text.len() > 2 * MAX_PLAINTEXT {
        return Err(EnvelopeError::TooLarge(text.len()));
    }
    let wire: Wire = serde_json::from_str(text).map_err(Malformation::Json)?;
    if wire.v != ENVELOPE_VERSION {
        return Err(EnvelopeError::Version(wire.v));
    }
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
    let decode = |field: &str, value: &str| {
        BASE64URL_NOPAD
            .decode(value.as_bytes())
            .map_err(|_| malformed(format!("{field} is not base64url")))
    };
    let ct = decode("ct", &wire.ct)?;
    let sig: [u8; 64] = decode("sig", &wire.sig)?
        .try_into()
        .map_err(|_| EnvelopeError::BadSignature)?;
    let aad = wire.header_bytes();
    let mut signed = aad.clone();
    signed.extend_from_slice(&ct);
    sender
        .verify(&signed, &Signature::from_bytes(&sig))
        .map_err(|_| EnvelopeError::BadSignature)?;
    if wire.expires_at_ms <= now_ms {
        return Err(EnvelopeError::Expired);
    }
    let epk: [u8; 32] = decode("epk", &wire.epk)?
        .try_into()
        .map_err(|_| malformed("epk is not 32 bytes"))?;
    let nonce: [u8; 12] = decode("nonce", &wire.nonce)?
        .try_into()
        .map_err(|_| malformed("nonce is not 12 bytes"))?;
    let shared = MontgomeryPoint(epk).mul_clamped(x25519_secret(recipient));
    let key = derive_key(&shared, &epk, &x25519_public(&me)?, &aad);
    let plaintext = ChaCha20Poly1305::new(&key.into())
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &ct,
                aad: &aad,
            },
        )
        .map_err(|_| EnvelopeError::Undecryptable)?;
    Ok(Opened {
        sender,
        header: Header {
            kind: wire.kind,
            context: wire.context,
            seq: wire.seq,
            expires_at_ms: wire.expires_at_ms,
        },
        plaintext,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_bytes(&[seed; 32])
    }

    fn header(expires_at_ms: i64) -> Header {
        Header {
            kind: EnvelopeKind::Command,
            context: "0b9f7a52-6a3c-4f3e-9c55-3f1c0d2e8a11".into(),
            seq: 0,
            expires_at_ms,
        }
    }

    #[test]
    fn refusals_say_why() {
        let (device, hub, other_hub) = (key(1), key(2), key(3));
        let sealed = seal(&device, &hub.public(), &header(1000), b"prompt").unwrap();
        assert!(!sealed.contains("prompt"), "no plaintext in the envelope");
        let paired = |k: &PublicKey| *k == device.public();
        assert_eq!(
            open(&hub, &sealed, 999, paired).unwrap().plaintext,
            b"prompt"
        );
        assert!(matches!(
            open(&other_hub, &sealed, 999, paired),
            Err(EnvelopeError::NotForUs)
        ));
        assert!(matches!(
            open(&hub, &sealed, 1000, paired),
            Err(EnvelopeError::Expired)
        ));
        assert!(matches!(
            open(&hub, &sealed, 999, |_| false),
            Err(EnvelopeError::UnknownSender(_))
        ));
        // Re-signed by another key claiming to be the device: forged.
        let mut wire: serde_json::Value = serde_json::from_str(&sealed).unwrap();
        wire["sig"] =
            serde_json::Value::String(BASE64URL_NOPAD.encode(&key(9).sign(b"anything").to_bytes()));
        assert!(matches!(
            open(&hub, &wire.to_string(), 999, paired),
            Err(EnvelopeError::BadSignature)
        ));
        // A later expiry written into the header: the signature no longer matches.
        let mut wire: serde_json::Value = serde_json::from_str(&sealed).unwrap();
        wire["expires_at_ms"] = 5000.into();
        assert!(matches!(
            open(&hub, &wire.to_string(), 1500, paired),
            Err(EnvelopeError::BadSignature)
        ));
        assert!(matches!(
            open(&hub, "{", 0, paired),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_json_is_kept_as_the_source() {
        let err = open(&key(1), "{", 0, |_| true).unwrap_err();
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert_eq!(err.to_string(), format!("malformed envelope: {json}"));
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source, Some(json.to_string()));
    }

    proptest! {
        #[test]
        fn round_trips_any_plaintext(plaintext in proptest::collection::vec(any::<u8>(), 0..2048), seq in any::<u64>()) {
            let (device, hub) = (key(4), key(5));
            let h = Header { seq, kind: EnvelopeKind::Event, ..header(i64::MAX) };
            let sealed = seal(&device, &hub.public(), &h, &plaintext).unwrap();
            let opened = open(&hub, &sealed, 0, |k| *k == device.public()).unwrap();
            prop_assert_eq!(opened.plaintext, plaintext);
            prop_assert_eq!(opened.header, h);
            prop_assert_eq!(opened.sender, device.public());
        }

        /// Changing any one character of the envelope never yields a different accepted message.
        #[test]
        fn any_tampering_is_refused(index in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_-]") {
            let (device, hub) = (key(6), key(7));
            let sealed = seal(&device, &hub.public(), &header(i64::MAX), b"the prompt").unwrap();
            let i = index.index(sealed.len());
            let mut tampered = sealed.clone();
            tampered.replace_range(i..i + 1, &replacement);
            if tampered != sealed
                && let Ok(opened) = open(&hub, &tampered, 0, |k| *k == device.public())
            {
                prop_assert_eq!(opened.plaintext, b"the prompt".to_vec());
            }
        }

        #[test]
        fn garbage_never_panics(text in ".{0,300}") {
            let _ = open(&key(8), &text, 0, |_| true);
        }
    }
}
