//! Publishing a command to every paired device: before the hub appends any event, it writes the
//! command's prompt (the command as accepted, under its content key) and the content key sealed
//! to each device paired now (`publish_cloud_command`). A device paired later, or revoked, gets
//! no key for it.
//!
//! The content key is derived, never stored: HKDF-SHA256 with the hub's 32-byte ed25519 secret
//! key as input key, salt [`CONTENT_KEY_SALT`] and the command id (UTF-8) as info. A restarted
//! hub derives the same key, so it can resume a command's events under the key the devices
//! already hold.

use helix_mesh::{
    cloud_payload::{CommandPayload, PayloadError, provider_name},
    envelope_v2::{self, ContentKey, ContentKind, EnvelopeError, SealRandom},
    proto_ext::{ms_to_timestamp, now_ms},
};
use hkdf::Hkdf;
use iroh::SecretKey;
use serde_json::{Value, json};
use sha2::Sha256;

use super::{
    CloudRoute,
    row::{GaveUp, Row},
};
use crate::command::NewCommand;

/// The HKDF salt of a command's content key.
pub const CONTENT_KEY_SALT: &[u8] = b"helix-content-key-v2";
/// Most device keys one command carries (what `publish_cloud_command` accepts).
pub const MAX_KEYS: usize = 64;
/// The longest a row may live before its expiry (the cloud's bound).
const MAX_ROW_TTL_MS: i64 = 24 * 3600 * 1000;

/// Why a command could not be sealed for the cloud.
#[derive(Debug, thiserror::Error)]
pub(super) enum SealError {
    #[error("sealing the command for the cloud: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("sealing the command for the cloud: {0}")]
    Payload(#[from] PayloadError),
}

/// Why publishing did not get through.
#[derive(Debug)]
pub(super) enum NotPublished {
    /// It could not be sealed, or the cloud refused it: the reason for the row.
    Refused(String),
    /// It kept failing until the command expired, or the hub stops (logged by the row).
    GaveUp,
}

/// The content key of `command_id` for the hub with `secret`.
pub fn content_key(secret: &SecretKey, command_id: &str) -> ContentKey {
    let hk = Hkdf::<Sha256>::new(Some(CONTENT_KEY_SALT), &secret.to_bytes());
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's output limit, so this cannot fail.
    let _ = hk.expand(command_id.as_bytes(), &mut key);
    ContentKey::from_bytes(key)
}

/// The command as the hub accepted it, defaults filled in, for every device's history.
pub(super) fn prompt_payload(cmd: &NewCommand, source_device_id: &str) -> CommandPayload {
    CommandPayload {
        command_id: cmd.command_id.to_string(),
        content: cmd.content.clone(),
        provider: provider_name(cmd.provider).map(str::to_owned),
        agent_id: Some(cmd.agent_id.clone()),
        session_id: Some(cmd.session_id.clone()),
        channel_id: cmd.channel_id.clone(),
        model: cmd.model.clone(),
        source_device_id: Some(source_device_id.to_owned()),
        created_at_ms: u64::try_from(cmd.created_at_ms).ok(),
        expires_at_ms: u64::try_from(cmd.expires_at_ms).ok(),
    }
}

impl CloudRoute {
    /// The arguments of `publish_cloud_command` for `cmd` (without the hub's id and token),
    /// sealed once: the prompt under `key`, and `key` for each device paired now (the most
    /// recently paired first, at most [`MAX_KEYS`]).
    pub(super) fn publication(
        &self,
        cmd: &NewCommand,
        source_device_id: &str,
        key: &ContentKey,
    ) -> Result<Value, SealError> {
        let command_id = cmd.command_id.to_string();
        let payload = prompt_payload(cmd, source_device_id).to_json()?;
        let prompt = envelope_v2::seal_content(
            &self.secret,
            key,
            ContentKind::Prompt,
            &command_id,
            0,
            &payload,
        )?;
        let mut devices = self.ctx.devices.list();
        if devices.len() > MAX_KEYS {
            tracing::warn!(
                %command_id,
                paired = devices.len(),
                "more devices are paired than a command carries keys for; the {MAX_KEYS} paired last get one"
            );
        }
        devices.sort_by_key(|(_, record)| std::cmp::Reverse(record.paired_at_ms));
        let keys = devices
            .iter()
            .take(MAX_KEYS)
            .map(|(device, _)| {
                let envelope = envelope_v2::wrap_content_key(
                    &self.secret,
                    device,
                    &command_id,
                    key,
                    &SealRandom::fresh(),
                )?;
                Ok(json!({"device": device.to_string(), "envelope": envelope}))
            })
            .collect::<Result<Vec<Value>, EnvelopeError>>()?;
        Ok(json!({
            "p_command_id": command_id,
            "p_source_device_id": source_device_id,
            "p_prompt": prompt,
            "p_keys": keys,
            // Used only for a row created here; the cloud bounds it to 24 h from now anyway.
            "p_expires_at": ms_to_timestamp(cmd.expires_at_ms.min(now_ms() + MAX_ROW_TTL_MS)).to_string(),
        }))
    }

    /// Publishes `cmd` to its row; the key its events go under.
    pub(super) async fn publish(
        &self,
        row: &Row<'_>,
        cmd: &NewCommand,
        source_device_id: &str,
    ) -> Result<ContentKey, NotPublished> {
        let command_id = row.command_id;
        let key = content_key(&self.secret, command_id);
        let publication = self
            .publication(cmd, source_device_id, &key)
            .map_err(|error| NotPublished::Refused(error.to_string()))?;
        match row.publish(&publication).await {
            Ok(()) => Ok(key),
            // Published before (by this hub: an answer that was lost, or a run before a
            // restart) with other envelopes: they hold the same derived key, so the devices
            // that got one read the events that follow.
            Err(GaveUp::Refused(error)) if error.is_conflict() => {
                tracing::debug!(%command_id, %error, "the command was published before");
                Ok(key)
            }
            Err(GaveUp::Refused(error)) => {
                tracing::warn!(%command_id, %error, "the cloud refused to publish a command");
                Err(NotPublished::Refused(format!(
                    "the cloud refused to publish it: {error}"
                )))
            }
            Err(GaveUp::Expired(_) | GaveUp::Stopping(_)) => Err(NotPublished::GaveUp),
        }
    }
}

#[cfg(test)]
mod tests {
    use helix_mesh::pb::Provider;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn the_content_key_is_hkdf_of_the_hub_secret_and_the_command_id() {
        let secret = SecretKey::from_bytes(&[7; 32]);
        let id = "0c6f6b7e-1d2a-4c3b-9e8f-001122334455";
        let key = content_key(&secret, id);
        assert_eq!(key, content_key(&secret, id), "derived, not random");
        assert_ne!(key, content_key(&secret, &Uuid::new_v4().to_string()));
        assert_ne!(key, content_key(&SecretKey::from_bytes(&[8; 32]), id));
        let mut expected = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"helix-content-key-v2"), &[7; 32])
            .expand(id.as_bytes(), &mut expected)
            .unwrap();
        assert_eq!(key.as_bytes(), &expected);
    }

    #[test]
    fn the_prompt_carries_the_command_as_accepted() {
        let mut cmd = NewCommand::for_test(Uuid::new_v4());
        cmd.provider = Provider::GoogleGemini;
        let payload = prompt_payload(&cmd, "device-key");
        assert_eq!(payload.command_id, cmd.command_id.to_string());
        assert_eq!(payload.content, "hi");
        assert_eq!(payload.provider.as_deref(), Some("google-gemini"));
        assert_eq!(payload.agent_id.as_deref(), Some("main"));
        assert_eq!(payload.session_id.as_deref(), Some("session"));
        assert_eq!(payload.source_device_id.as_deref(), Some("device-key"));
        assert_eq!(payload.created_at_ms, u64::try_from(cmd.created_at_ms).ok());
        let back = CommandPayload::from_json(&payload.to_json().unwrap()).unwrap();
        assert_eq!(back, payload);
    }
}
