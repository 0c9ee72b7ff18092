//! Pairing through the cloud (`helix pair --via cloud`): for a device that cannot reach the
//! hub over iroh. The ticket's secret goes to the hub sealed to the hub's key (from the
//! ticket) in a `cloud_pairings` row; the hub redeems it with the same rules as over iroh and
//! answers in the row, sealed to this device and signed by the hub, which this side checks
//! against the ticket's key before it believes the answer.

use std::time::Duration;

use helix_discovery::{
    cloud::{Cloud, CloudError},
    rest::{Rest, RestError},
};
use helix_mesh::{
    cloud_payload::{PairingAnswer, PairingRequest, PayloadError},
    envelope_v2::{self, EnvelopeError, SealedHeader, SealedKind},
    proto_ext::{ms_to_system_time, now_ms},
    ticket::PairingSecret,
};
use iroh::{PublicKey, SecretKey};
use serde_json::{Value, json};

use crate::render::{Printer, printable};

/// How long the request row lives (the database allows at most 10 minutes).
const REQUEST_TTL: Duration = Duration::from_secs(5 * 60);
/// How long this side waits for the hub's answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(120);
/// How often the row is read while waiting.
const ANSWER_POLL: Duration = Duration::from_secs(1);

/// Pairing through the cloud failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudPairError {
    #[error("pairing through the cloud: {0}")]
    Cloud(#[from] CloudError),
    #[error(
        "pairing through the cloud needs the cloud: run `helix cloud login` with the account the hub uses"
    )]
    SignedOut,
    #[error(
        "hub {0} has not connected to the cloud under this account: on the hub run `helix-hub cloud login` with the same account, and restart it"
    )]
    HubNotInCloud(String),
    #[error("pairing through the cloud: {0}")]
    Rest(#[source] RestError),
    #[error("pairing through the cloud: sealing the request: {0}")]
    Seal(#[source] EnvelopeError),
    #[error("pairing through the cloud: {0}")]
    Payload(#[from] PayloadError),
    #[error(
        "hub {hub} did not answer through the cloud within {}: is it running and signed in to the cloud?",
        humantime::format_duration(*wait)
    )]
    NoAnswer { hub: String, wait: Duration },
    #[error(
        "the answer in the cloud is not hub {hub}'s: it is signed by {signer} (forged, or the ticket's hub is not the hub that answered); nothing was paired"
    )]
    AnswerFromOther { hub: String, signer: String },
    #[error("the answer in the cloud is not hub {hub}'s: {source}; nothing was paired")]
    ForgedAnswer {
        hub: String,
        #[source]
        source: EnvelopeError,
    },
}

/// The hub's answer, once it came and was checked.
pub enum Answer {
    Accepted { hub_name: String },
    Refused { reason: String },
}

/// Asks `hub` through the cloud to pair this device (`device`) with `secret`, and waits for
/// its signed answer.
pub async fn pair(
    config_dir: &std::path::Path,
    device: &SecretKey,
    hub: PublicKey,
    secret: &PairingSecret,
    device_name: &str,
    printer: &mut Printer,
) -> Result<Answer, CloudPairError> {
    let rest = match Cloud::in_dir(config_dir).rest().await? {
        Some((rest, _session)) => rest,
        None => return Err(CloudPairError::SignedOut),
    };
    let pairing_id = uuid::Uuid::new_v4().to_string();
    let expires_at_ms = now_ms() + REQUEST_TTL.as_millis() as i64;
    let header = SealedHeader {
        kind: SealedKind::PairingRequest,
        context: pairing_id.clone(),
        seq: 0,
        expires_at_ms: expires_at_ms.unsigned_abs(),
    };
    let payload = PairingRequest {
        secret: secret.to_hex(),
        device_name: device_name.to_owned(),
    };
    let request = envelope_v2::seal(device, &hub, &header, &payload.to_json()?)
        .map_err(CloudPairError::Seal)?;
    let row = json!({
        "pairing_id": pairing_id,
        "hub_id": hub.to_string(),
        "device_id": device.public().to_string(),
        "request": request,
        "expires_at": humantime::format_rfc3339_millis(ms_to_system_time(expires_at_ms)).to_string(),
    });
    let inserted: Result<Vec<Value>, _> = rest.insert("cloud_pairings", &[row], None).await;
    match inserted {
        Ok(_) => {}
        // The hub id is not registered under this account (foreign_key_violation).
        Err(e) if e.code() == Some("23503") => {
            return Err(CloudPairError::HubNotInCloud(hub.fmt_short().to_string()));
        }
        Err(e) => return Err(CloudPairError::Rest(e)),
    }
    printer.progress(&format!(
        "asked hub {} through the cloud; waiting for its answer…",
        hub.fmt_short()
    ));
    let text = wait_for_answer(&rest, &pairing_id, hub).await?;
    let opened = envelope_v2::open_sealed(device, &text, now_ms().unsigned_abs(), |k| *k == hub)
        .and_then(|opened| {
            if opened.header.kind != SealedKind::PairingAnswer {
                return Err(EnvelopeError::WrongKind {
                    expected: "pairing_answer",
                    found: opened.header.kind.name(),
                });
            }
            if opened.header.context != pairing_id {
                return Err(EnvelopeError::WrongCommand {
                    expected: pairing_id.clone(),
                    found: opened.header.context.clone(),
                });
            }
            Ok(opened)
        })
        .map_err(|source| match source {
            EnvelopeError::UnknownSender(signer) => CloudPairError::AnswerFromOther {
                hub: hub.fmt_short().to_string(),
                signer,
            },
            source => CloudPairError::ForgedAnswer {
                hub: hub.fmt_short().to_string(),
                source,
            },
        })?;
    let answer = PairingAnswer::from_json(&opened.plaintext)?;
    Ok(if answer.accepted {
        Answer::Accepted {
            hub_name: printable(answer.hub_name.as_deref().unwrap_or_default()),
        }
    } else {
        Answer::Refused {
            reason: printable(answer.reason.as_deref().unwrap_or("no reason given")),
        }
    })
}

/// Reads the row until the hub's answer is in it, for at most [`ANSWER_WAIT`].
async fn wait_for_answer(
    rest: &Rest,
    pairing_id: &str,
    hub: PublicKey,
) -> Result<String, CloudPairError> {
    let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
    let query = format!("pairing_id=eq.{pairing_id}&select=status,answer");
    loop {
        let rows: Vec<Value> = rest
            .select("cloud_pairings", &query)
            .await
            .map_err(CloudPairError::Rest)?;
        if let Some(answer) = rows.first().and_then(|r| r["answer"].as_str()) {
            return Ok(answer.to_owned());
        }
        if tokio::time::Instant::now() + ANSWER_POLL > deadline {
            return Err(CloudPairError::NoAnswer {
                hub: hub.fmt_short().to_string(),
                wait: ANSWER_WAIT,
            });
        }
        tokio::time::sleep(ANSWER_POLL).await;
    }
}
