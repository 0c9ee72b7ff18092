//! The primitives both shapes compose: X25519 from ed25519 keys, HKDF-SHA256,
//! ChaCha20-Poly1305, ed25519 signatures over header bytes and ciphertext.

use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use curve25519_dalek::MontgomeryPoint;
use data_encoding::BASE64URL_NOPAD;
use hkdf::Hkdf;
use iroh::{PublicKey, SecretKey, Signature};
use sha2::Sha256;

use super::{EnvelopeError, MAX_SAFE_INTEGER, error::malformed};

pub(super) fn check_int(field: &str, value: u64) -> Result<(), EnvelopeError> {
    if value > MAX_SAFE_INTEGER {
        return Err(malformed(format!("{field} is over 2^53 - 1")));
    }
    Ok(())
}

/// The X25519 key of an ed25519 public key.
pub(super) fn x25519_public(key: &PublicKey) -> Result<MontgomeryPoint, EnvelopeError> {
    ed25519_dalek::VerifyingKey::from_bytes(key.as_bytes())
        .map(|k| k.to_montgomery())
        .map_err(|_| malformed("recipient key is not a valid ed25519 key"))
}

/// The X25519 secret scalar of an ed25519 secret key (unclamped; `mul_clamped` clamps).
pub(super) fn x25519_secret(key: &SecretKey) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&key.to_bytes()).to_scalar_bytes()
}

/// HKDF-SHA256: salt `epk ‖ recipient's X25519 key`, the shared secret as input key, the
/// header bytes as info.
pub(super) fn sealing_key(
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

pub(super) fn encrypt(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    // ChaCha20-Poly1305 fails only past 256 GiB of plaintext; MAX_PLAINTEXT is checked first.
    ChaCha20Poly1305::new(key.into())
        .encrypt(&Nonce::from(*nonce), Payload { msg, aad })
        .unwrap_or_default()
}

pub(super) fn decrypt(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    ChaCha20Poly1305::new(key.into())
        .decrypt(&Nonce::from(*nonce), Payload { msg, aad })
        .map_err(|_| EnvelopeError::Undecryptable)
}

pub(super) fn signed_bytes(header: &[u8], ct: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(header.len() + ct.len());
    signed.extend_from_slice(header);
    signed.extend_from_slice(ct);
    signed
}

pub(super) fn verify(
    signer: &PublicKey,
    header: &[u8],
    ct: &[u8],
    sig: &str,
) -> Result<(), EnvelopeError> {
    let sig: [u8; 64] = BASE64URL_NOPAD
        .decode(sig.as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(EnvelopeError::BadSignature)?;
    signer
        .verify(&signed_bytes(header, ct), &Signature::from_bytes(&sig))
        .map_err(|_| EnvelopeError::BadSignature)
}
