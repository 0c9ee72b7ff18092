//! `helix-hub pair`, `devices` and `ticket`: requests to the running hub's admin service
//! (`devices` also works on the file while the hub is stopped).

use std::{io::IsTerminal, path::Path};

use anyhow::{Context, bail};
use helix_discovery::local::{AddBearer, LocalHub};
use helix_hub::{cli::DevicesAction, devices::Devices};
use helix_mesh::{
    pb::{self, hub_admin_client::HubAdminClient},
    proto_ext::{ms_to_system_time, timestamp_to_ms},
    ticket::Ticket,
    web_link::WebPairingLink,
};
use tonic::service::interceptor::InterceptedService;

use crate::terminal::{out, say};

/// The running hub's admin service.
async fn admin_client(
    data_dir: &Path,
) -> anyhow::Result<HubAdminClient<InterceptedService<tonic::transport::Channel, AddBearer>>> {
    let hub = LocalHub::find(data_dir)?;
    let (channel, bearer) = hub.dial().await?;
    Ok(HubAdminClient::with_interceptor(channel, bearer))
}

fn status_error(action: &str, status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::Unimplemented {
        anyhow::anyhow!(
            "{action}: the hub runs without iroh (iroh.enabled = false or --no-iroh), so it has no devices"
        )
    } else {
        anyhow::anyhow!("{action}: {}", status.message())
    }
}

/// Where `pair --web` sends the browser: the app's URL and the cloud project it pairs through.
struct WebTarget {
    app_url: String,
    cloud: helix_discovery::rest::SupabaseConfig,
}

/// Checks everything `pair --web` needs before a ticket (a secret) is created.
fn web_target(data_dir: &Path, app_url: Option<String>) -> anyhow::Result<WebTarget> {
    let Some(app_url) = app_url else {
        bail!(
            "pair --web needs the web app's address: pass --app-url https://… (or set HELIX_WEB_APP_URL); scripts/local-cloud serves one at its HELIX_SUPABASE_URL"
        );
    };
    helix_mesh::web_link::check_app_url(&app_url).context("--app-url")?;
    let cloud = helix_discovery::cloud::Cloud::in_dir(data_dir);
    let config = cloud.config()?.context(
        "pair --web pairs through the cloud, and this hub has none: run `helix-hub cloud login --url … --anon-key …` first, then restart the hub",
    )?;
    if cloud.sessions().load()?.is_none() {
        bail!(
            "pair --web pairs through the cloud, and this hub is not signed in: run `helix-hub cloud login`, then restart the hub"
        );
    }
    Ok(WebTarget {
        app_url,
        cloud: config,
    })
}

/// `helix-hub pair [--web]`. `web`: `Some(app URL)` for a web pairing link.
pub(crate) async fn pair(
    data_dir: &Path,
    ttl: std::time::Duration,
    json: bool,
    web: Option<Option<String>>,
) -> anyhow::Result<()> {
    let web = web
        .map(|app_url| web_target(data_dir, app_url))
        .transpose()?;
    let mut admin = admin_client(data_dir)
        .await
        .context("pairing needs the running hub")?;
    let ttl_seconds = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
    let ticket = admin
        .create_pairing(pb::CreatePairingRequest { ttl_seconds })
        .await
        .map_err(|s| status_error("creating a pairing ticket", s))?
        .into_inner();
    let expires_at_ms = ticket.expires_at.as_ref().map(timestamp_to_ms).unwrap_or(0);
    let expires = humantime::format_rfc3339_seconds(ms_to_system_time(expires_at_ms)).to_string();
    let (text, hint) = match web {
        None => (
            ticket.ticket,
            format!(
                "one-time pairing ticket, valid until {expires}; on the new device run `helix pair` and paste it (or `helix pair < FILE`, `helix pair --ticket-file FILE`), which keeps it out of the process list and shell history"
            ),
        ),
        Some(target) => {
            let Ok(Ticket::Pair { addr, secret }) = Ticket::decode(&ticket.ticket) else {
                bail!("the hub answered with a ticket this program cannot read: update helix-hub");
            };
            let link = WebPairingLink {
                app_url: target.app_url,
                hub: addr.id.to_string(),
                secret,
                supabase_url: target.cloud.url,
                anon_key: target.cloud.anon_key,
                expires_at_ms,
            }
            .to_url()
            .context("--app-url")?;
            (
                link,
                format!(
                    "one-time pairing link, valid until {expires}: open it on the phone or in the browser to pair (scan the code, or send the link to yourself); it pairs the first device that uses it, so share it with no one else"
                ),
            )
        }
    };
    if json {
        let key = if text.starts_with(helix_mesh::ticket::PAIR_PREFIX) {
            "ticket"
        } else {
            "link"
        };
        out(&serde_json::json!({key: text, "expires_at": expires}).to_string());
        return Ok(());
    }
    if std::io::stdout().is_terminal()
        && let Ok(code) = qrcode::QrCode::new(text.as_bytes())
    {
        out(&code
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build());
    }
    say(&hint);
    out(&text);
    Ok(())
}

pub(crate) async fn devices(data_dir: &Path, action: DevicesAction) -> anyhow::Result<()> {
    let running = helix_discovery::local::is_running(data_dir);
    match action {
        DevicesAction::List { json } => {
            let rows: Vec<(String, String, i64, Option<u32>)> = if running {
                let mut admin = admin_client(data_dir).await?;
                admin
                    .list_devices(pb::ListDevicesRequest {})
                    .await
                    .map_err(|s| status_error("listing devices", s))?
                    .into_inner()
                    .devices
                    .into_iter()
                    .map(|d| {
                        let at = d.paired_at.as_ref().map(timestamp_to_ms).unwrap_or(0);
                        (d.device_id, d.name, at, Some(d.live_connections))
                    })
                    .collect()
            } else {
                Devices::load(data_dir)?
                    .list()
                    .into_iter()
                    .map(|(id, r)| (id.to_string(), r.name, r.paired_at_ms, None))
                    .collect()
            };
            if json {
                for (id, name, at, live) in &rows {
                    out(&serde_json::json!({"device_id": id, "name": name, "paired_at_ms": at, "live_connections": live}).to_string());
                }
                return Ok(());
            }
            if rows.is_empty() {
                say("no paired devices; pair one with `helix-hub pair`");
                return Ok(());
            }
            out(&format!(
                "{:<64}  {:<20}  {:<20}  LIVE",
                "DEVICE", "NAME", "PAIRED"
            ));
            for (id, name, at, live) in rows {
                let when = humantime::format_rfc3339_seconds(ms_to_system_time(at)).to_string();
                let live = live.map_or("-".to_owned(), |n| n.to_string());
                out(&format!("{id:<64}  {name:<20}  {when:<20}  {live}"));
            }
            Ok(())
        }
        DevicesAction::Revoke { id } => {
            if running {
                let mut admin = admin_client(data_dir).await?;
                let answer = admin
                    .revoke_device(pb::RevokeDeviceRequest {
                        device_id: id.clone(),
                    })
                    .await
                    .map_err(|s| status_error("revoking", s))?
                    .into_inner();
                say(&format!(
                    "revoked {id}; closed {} live connection(s)",
                    answer.closed_connections
                ));
            } else {
                let device: iroh::EndpointId = id
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{id:?} is not a device id"))?;
                if !Devices::load(data_dir)?.remove(&device)? {
                    bail!("no paired device {id}");
                }
                say(&format!(
                    "revoked {id} (the hub is not running, so nothing was connected)"
                ));
            }
            Ok(())
        }
    }
}

pub(crate) async fn ticket(data_dir: &Path) -> anyhow::Result<()> {
    let mut admin = admin_client(data_dir)
        .await
        .context("the address ticket needs the running hub")?;
    let ticket = admin
        .get_ticket(pb::GetTicketRequest {})
        .await
        .map_err(|s| status_error("getting the ticket", s))?
        .into_inner();
    say(&format!("hub {}", ticket.hub_id));
    out(&ticket.ticket);
    Ok(())
}
