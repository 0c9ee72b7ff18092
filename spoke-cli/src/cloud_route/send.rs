//! Sending a command through the cloud: the request as a [`CommandPayload`] (JSON), sealed by
//! this device to the hub (envelope v2, kind `command`, bound to the command id and expiring
//! with the command), inserted as a `cloud_commands` row. The server sets `created_at` and
//! bounds `expires_at` to 24 h; its refusals become messages a person can act on.

use std::time::Duration;

use helix_discovery::rest::{Rest, RestError};
use helix_mesh::{
    cloud_payload::CommandPayload,
    envelope_v2::{self, SealedHeader, SealedKind},
    pb,
    proto_ext::{ms_to_system_time, now_ms, timestamp_to_ms},
};
use iroh::{PublicKey, SecretKey};
use serde_json::{Value, json};

use super::{CloudRouteError, row::COMMANDS};
use crate::render::printable;

/// The longest a command may wait in the cloud (the table's bound on `expires_at`).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// A request without an expiry expires this long after it is sent.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The `cloud_commands` row that sends `request` from `device` to `hub`.
pub(super) fn command_row(
    device: &SecretKey,
    hub: &PublicKey,
    request: &pb::ExecuteRequest,
) -> Result<Value, CloudRouteError> {
    let now = u64::try_from(now_ms()).unwrap_or_default();
    let expires_at_ms = request
        .expires_at
        .as_ref()
        .and_then(|t| u64::try_from(timestamp_to_ms(t)).ok())
        .unwrap_or(now + DEFAULT_TTL.as_millis() as u64);
    let ttl = Duration::from_millis(expires_at_ms.saturating_sub(now));
    // A second of slack: the request's expiry was computed a moment ago from the same TTL.
    if ttl > MAX_TTL + Duration::from_secs(1) {
        // To the second, as it was asked for (`--ttl 25h`), not as it is a moment later.
        let secs = (ttl.as_millis() + 500) / 1000;
        return Err(CloudRouteError::TtlTooLong {
            ttl: Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX)),
        });
    }
    let header = SealedHeader {
        kind: SealedKind::Command,
        context: request.command_id.clone(),
        seq: 0,
        expires_at_ms,
    };
    let payload = CommandPayload::from_request(request)
        .to_json()
        .map_err(CloudRouteError::Payload)?;
    let sealed =
        envelope_v2::seal(device, hub, &header, &payload).map_err(CloudRouteError::Seal)?;
    let expires_at = i64::try_from(expires_at_ms).unwrap_or(i64::MAX);
    let expires = humantime::format_rfc3339_millis(ms_to_system_time(expires_at)).to_string();
    Ok(json!({
        "command_id": request.command_id,
        "hub_id": hub.to_string(),
        "source_device_id": device.public().to_string(),
        "envelope": sealed,
        "expires_at": expires,
    }))
}

/// Inserts the row; the server's refusals as [`CloudRouteError`]s that say what to do.
pub(super) async fn insert(
    rest: &Rest,
    hub: &PublicKey,
    row: Value,
) -> Result<(), CloudRouteError> {
    match rest.insert::<Value>(COMMANDS, &[row], None).await {
        Ok(_) => Ok(()),
        Err(e) => Err(refusal(e, hub)),
    }
}

fn refusal(e: RestError, hub: &PublicKey) -> CloudRouteError {
    let message = match &e {
        RestError::Api { message, .. } => printable(message),
        _ => String::new(),
    };
    match e.code() {
        Some("23503") => CloudRouteError::HubNotRegistered {
            hub: hub.fmt_short().to_string(),
        },
        Some("54000") => CloudRouteError::CloudFull { message },
        Some("23514") => CloudRouteError::ExpiryRefused { message },
        Some("42501") => CloudRouteError::NotAllowed { message },
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use helix_mesh::{cloud_payload::CommandPayload, envelope_v2, proto_ext::ms_to_timestamp};

    use super::*;

    fn request(ttl_ms: i64) -> pb::ExecuteRequest {
        let now = now_ms();
        pb::ExecuteRequest {
            command_id: "0b9f7a52-6a3c-4f3e-9c55-3f1c0d2e8a11".into(),
            agent_id: "main".into(),
            provider: pb::Provider::OpenaiCodex as i32,
            content: "hello".into(),
            created_at: Some(ms_to_timestamp(now)),
            expires_at: Some(ms_to_timestamp(now + ttl_ms)),
            ..Default::default()
        }
    }

    #[test]
    fn the_row_carries_the_command_sealed_to_the_hub_with_its_expiry() {
        let device = SecretKey::generate();
        let hub = SecretKey::generate();
        let req = request(600_000);
        let row = command_row(&device, &hub.public(), &req).unwrap();
        assert_eq!(row["hub_id"], hub.public().to_string());
        assert_eq!(row["source_device_id"], device.public().to_string());
        let opened = envelope_v2::open_sealed(
            &hub,
            row["envelope"].as_str().unwrap(),
            u64::try_from(now_ms()).unwrap(),
            |k| *k == device.public(),
        )
        .unwrap();
        assert_eq!(opened.header.kind, SealedKind::Command);
        assert_eq!(opened.header.context, req.command_id);
        let expires = u64::try_from(timestamp_to_ms(req.expires_at.as_ref().unwrap())).unwrap();
        assert_eq!(opened.header.expires_at_ms, expires);
        let payload = CommandPayload::from_json(&opened.plaintext).unwrap();
        assert_eq!(payload, CommandPayload::from_request(&req));
        assert_eq!(payload.provider.as_deref(), Some("openai-codex"));
        let text = row["expires_at"].as_str().unwrap();
        let parsed = humantime::parse_rfc3339(text).unwrap();
        assert_eq!(
            helix_mesh::proto_ext::system_time_to_ms(parsed),
            i64::try_from(expires).unwrap()
        );
    }

    #[test]
    fn more_than_a_day_is_refused_before_anything_is_sent() {
        let key = SecretKey::generate();
        let err = command_row(&key, &key.public(), &request(25 * 3_600_000)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CloudRouteError::TtlTooLong { .. }), "{text}");
        assert!(
            text == "the cloud route keeps a command at most 24h, not 1day 1h: pass --ttl 24h or less",
            "{text}"
        );
        assert!(command_row(&key, &key.public(), &request(24 * 3_600_000)).is_ok());
    }

    #[test]
    fn the_servers_refusals_say_what_to_do() {
        let hub = SecretKey::generate().public();
        let api = |code: &str, message: &str| RestError::Api {
            what: "writing cloud_commands".into(),
            status: 409,
            code: Some(code.into()),
            message: message.into(),
        };
        let text = |e: RestError| refusal(e, &hub).to_string();
        assert_eq!(
            text(api(
                "23503",
                "insert or update violates foreign key constraint"
            )),
            format!(
                "hub {} has not connected to the cloud under this account: on the hub run `helix-hub cloud login` with the same account, then restart it",
                hub.fmt_short()
            )
        );
        assert_eq!(
            text(api(
                "54000",
                "this account already has 64 commands waiting for a hub\u{1b}[2J"
            )),
            "the cloud refused the command: this account already has 64 commands waiting for a hub[2J (wait for the hub to take them, or cancel some with `helix cancel --via cloud ID`)"
        );
        assert!(
            text(api("23514", "violates check constraint"))
                .contains("is this device's clock right?")
        );
        assert!(text(api("42501", "row-level security")).contains("`helix cloud login`"));
        assert!(matches!(
            refusal(api("XX000", "boom"), &hub),
            CloudRouteError::Rest(_)
        ));
    }
}
