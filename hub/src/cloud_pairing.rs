//! Pairing requests that come through the cloud (`helix pair --via cloud`): a device that
//! cannot reach the hub over iroh seals the ticket's secret to the hub in a `cloud_pairings`
//! row; the hub redeems it at its [`PairingDesk`] (the same one-time secrets, expiry and
//! throttle as iroh pairing) and answers in the row, sealed to the device and signed, so the
//! device can check the answer against the hub key in its ticket.
//!
//! When the hub reads the rows is the cloud route's choice (`cloud_route::pairing`): on a
//! Realtime wake-up, and while a pairing secret is outstanding.

use helix_discovery::rest::{Rest, RestError};
use helix_mesh::{
    cloud_payload::{PairingAnswer, PairingRequest},
    envelope_v2::{self, SealedHeader, SealedKind},
    proto_ext::now_ms,
};
use iroh::{PublicKey, SecretKey};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::pairing::PairingDesk;

/// One waiting request, as `pending_cloud_pairings` returns it.
#[derive(Debug, Deserialize)]
struct Row {
    pairing_id: String,
    device_id: String,
    request: String,
}

/// Answers the hub's waiting pairing requests (each accepted or refused, with why); how many
/// it answered.
pub async fn answer_waiting(
    rest: &Rest,
    secret: &SecretKey,
    token: &str,
    desk: &PairingDesk,
) -> Result<usize, RestError> {
    let hub_id = secret.public().to_string();
    let rows: Vec<Row> = rest
        .rpc(
            "pending_cloud_pairings",
            &json!({"p_hub_id": hub_id, "p_token": token}),
        )
        .await?;
    let mut answered = 0;
    for row in rows {
        let Some(sealed) = answer(secret, desk, &row) else {
            continue;
        };
        let args = json!({
            "p_hub_id": hub_id, "p_token": token,
            "p_pairing_id": row.pairing_id, "p_answer": sealed,
        });
        match rest.rpc::<Value>("answer_cloud_pairing", &args).await {
            Ok(_) => answered += 1,
            Err(error) => {
                tracing::warn!(pairing_id = %row.pairing_id, %error, "answering a pairing request through the cloud failed");
            }
        }
    }
    Ok(answered)
}

/// The sealed answer to one request (`None` when the device's key in the row is not a key:
/// there is no one to answer).
fn answer(secret: &SecretKey, desk: &PairingDesk, row: &Row) -> Option<String> {
    let device: PublicKey = row.device_id.parse().ok()?;
    let answer = match redeem(secret, desk, &device, row) {
        Ok(()) => PairingAnswer {
            accepted: true,
            hub_name: Some(desk.hub_name.clone()),
            reason: None,
        },
        Err(reason) => PairingAnswer {
            accepted: false,
            hub_name: None,
            reason: Some(reason),
        },
    };
    let header = SealedHeader {
        kind: SealedKind::PairingAnswer,
        context: row.pairing_id.clone(),
        seq: 0,
        expires_at_ms: 0,
    };
    let sealed = answer
        .to_json()
        .ok()
        .and_then(|plain| envelope_v2::seal(secret, &device, &header, &plain).ok());
    if sealed.is_none() {
        tracing::warn!(pairing_id = %row.pairing_id, "could not seal a pairing answer");
    }
    sealed
}

/// Opens the request (sealed to this hub by the row's device, for this row, unexpired) and
/// redeems its secret; the refusal's text otherwise.
fn redeem(
    secret: &SecretKey,
    desk: &PairingDesk,
    device: &PublicKey,
    row: &Row,
) -> Result<(), String> {
    let opened = envelope_v2::open_sealed(secret, &row.request, now_ms().unsigned_abs(), |k| {
        k == device
    })
    .map_err(|e| format!("the pairing request did not open: {e}"))?;
    if opened.header.kind != SealedKind::PairingRequest || opened.header.context != row.pairing_id {
        return Err("the pairing request does not belong to this row".into());
    }
    let request = PairingRequest::from_json(&opened.plaintext).map_err(|e| e.to_string())?;
    desk.answer(*device, &request.secret, &request.device_name)
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use helix_mesh::envelope_v2::open_sealed;

    use super::*;
    use crate::devices::{Devices, Pairings};

    const PAIRING: &str = "7e3c9b1a-2f4d-4c8e-b1a6-9d0e5f2a3b4c";

    fn desk(dir: &std::path::Path) -> PairingDesk {
        PairingDesk {
            devices: Arc::new(Devices::load(dir).unwrap()),
            pairings: Arc::new(Pairings::default()),
            hub_name: "desk".into(),
        }
    }

    /// A row as `device` would write it, with `signer` signing the request.
    fn row(hub: &SecretKey, device: &SecretKey, signer: &SecretKey, secret: &str) -> Row {
        let header = SealedHeader {
            kind: SealedKind::PairingRequest,
            context: PAIRING.into(),
            seq: 0,
            expires_at_ms: now_ms().unsigned_abs() + 60_000,
        };
        let plain = PairingRequest {
            secret: secret.into(),
            device_name: "phone\u{7}".into(),
        }
        .to_json()
        .unwrap();
        Row {
            pairing_id: PAIRING.into(),
            device_id: device.public().to_string(),
            request: envelope_v2::seal(signer, &hub.public(), &header, &plain).unwrap(),
        }
    }

    fn opened(hub: &SecretKey, device: &SecretKey, sealed: &str) -> PairingAnswer {
        let opened = open_sealed(device, sealed, now_ms().unsigned_abs(), |k| {
            *k == hub.public()
        })
        .unwrap();
        assert_eq!(opened.header.kind, SealedKind::PairingAnswer);
        assert_eq!(opened.header.context, PAIRING);
        PairingAnswer::from_json(&opened.plaintext).unwrap()
    }

    #[test]
    fn a_request_with_the_secret_pairs_once_and_the_answer_is_signed_for_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let desk = desk(dir.path());
        let hub = SecretKey::from_bytes(&[1; 32]);
        let phone = SecretKey::from_bytes(&[2; 32]);
        let secret = desk.pairings.create(Duration::from_secs(60)).to_hex();

        let first = answer(&hub, &desk, &row(&hub, &phone, &phone, &secret)).unwrap();
        let a = opened(&hub, &phone, &first);
        assert!(a.accepted);
        assert_eq!(a.hub_name.as_deref(), Some("desk"));
        assert!(desk.devices.is_paired(&phone.public()));
        assert_eq!(
            desk.devices.list()[0].1.name,
            "phone",
            "control characters dropped"
        );

        let again = answer(&hub, &desk, &row(&hub, &phone, &phone, &secret)).unwrap();
        let a = opened(&hub, &phone, &again);
        assert!(!a.accepted);
        assert!(a.reason.unwrap().contains("unknown or was already used"));
    }

    #[test]
    fn a_request_signed_by_another_key_or_with_a_wrong_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let desk = desk(dir.path());
        let hub = SecretKey::from_bytes(&[1; 32]);
        let phone = SecretKey::from_bytes(&[2; 32]);
        let mallory = SecretKey::from_bytes(&[3; 32]);
        let secret = desk.pairings.create(Duration::from_secs(60)).to_hex();

        // Mallory signs a request that claims to come from the phone.
        let forged = answer(&hub, &desk, &row(&hub, &phone, &mallory, &secret)).unwrap();
        let a = opened(&hub, &phone, &forged);
        assert!(!a.accepted);
        assert!(
            a.reason
                .unwrap()
                .starts_with("the pairing request did not open"),
            "refused before the secret is tried"
        );
        assert!(desk.pairings.has_pending(), "the secret is not used up");

        let wrong = answer(&hub, &desk, &row(&hub, &phone, &phone, &"00".repeat(32))).unwrap();
        assert!(!opened(&hub, &phone, &wrong).accepted);
        assert!(!desk.devices.is_paired(&phone.public()));
    }
}
