//! The sealed shape: to one recipient, signed by the sender (commands, content keys).

use curve25519_dalek::MontgomeryPoint;
use data_encoding::BASE64URL_NOPAD;
use iroh::{PublicKey, SecretKey};

use super::{
    ContentKey, EnvelopeError, MAX_PLAINTEXT, OpenedSealed, SealRandom, SealedHeader, SealedKind,
    VERSION,
    crypto::{
        check_int, decrypt, encrypt, sealing_key, signed_bytes, verify, x25519_public,
        x25519_secret,
    },
    error::malformed,
    wire::{self, SealedWire, decode_fixed},
};

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
