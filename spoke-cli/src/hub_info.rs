//! The `helix` subcommands about the hub as a whole: `watch` (every command's status changes,
//! live, and on stderr each change of route) and `info` (version, id, providers, limits).

use helix_mesh::pb;
use serde_json::json;

use crate::{
    client::{HubStatus, ReachError, Spoke},
    exit::Exit,
    render::{Printer, provider_name, status_name, time_text},
    route_watch::Routes,
};

/// `helix watch` or `helix info` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubInfoError {
    #[error(transparent)]
    Reach(#[from] ReachError),
    /// The hub answered with an error.
    #[error(transparent)]
    Status(#[from] HubStatus),
    #[error("the hub ended the watch")]
    WatchEnded,
}

pub async fn watch(
    spoke: &Spoke,
    hub: Option<&str>,
    json: bool,
    quiet: bool,
) -> Result<Exit, HubInfoError> {
    let mut conn = spoke.connect_quietly(hub).await?;
    let mut stream = conn
        .client
        .watch(pb::WatchRequest {})
        .await
        .map_err(HubStatus)?
        .into_inner();
    let mut printer = Printer::new(json, quiet);
    printer.progress("watching the hub's commands (Ctrl-C to stop)");
    // Says when the connection's path changes; stops when the watch ends.
    let mut routes = Routes::start(&conn);
    loop {
        let change = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Ok),
            seen = routes.changed() => {
                routes.seen(seen, &mut printer);
                continue;
            }
            m = stream.message() => m,
        };
        match change {
            Ok(Some(c)) => {
                let time = c.time.as_ref().map(time_text).unwrap_or_default();
                if json {
                    printer.out_line(
                        &json!({
                            "command_id": c.command_id,
                            "status": status_name(c.status),
                            "time": time,
                            "session_id": c.session_id,
                            "provider": provider_name(c.provider),
                            "source_device_id": c.source_device_id,
                            "error": c.error,
                            "seq": c.seq,
                        })
                        .to_string(),
                    );
                } else {
                    let mut line = format!(
                        "{time}  {:<9}  {}  {}",
                        status_name(c.status),
                        c.command_id,
                        provider_name(c.provider)
                    );
                    if !c.error.is_empty() {
                        line.push_str(&format!("  {}", c.error));
                    }
                    printer.out_line(&line);
                }
            }
            Ok(None) => return Err(HubInfoError::WatchEnded),
            Err(status) => return Err(HubStatus(status).into()),
        }
    }
}

pub async fn info(spoke: &Spoke, hub: Option<&str>, json: bool) -> Result<Exit, HubInfoError> {
    let mut conn = spoke.connect_quietly(hub).await?;
    let info = conn
        .client
        .get_hub_info(pb::GetHubInfoRequest {})
        .await
        .map_err(HubStatus)?
        .into_inner();
    let mut printer = Printer::new(json, false);
    let limits = info.limits.unwrap_or_default();
    if json {
        printer.out_line(
            &json!({
                "hub_id": info.hub_id,
                "version": info.version,
                "protocol_version": info.protocol_version,
                "address": conn.hub_label(),
                "route": conn.route(),
                "providers": info.providers.iter().map(|p| json!({
                    "name": p.name, "supported": p.supported,
                    "has_credential": p.has_credential, "credential_kind": p.credential_kind,
                })).collect::<Vec<_>>(),
                "max_concurrent": limits.max_concurrent,
                "queue_capacity": limits.queue_capacity,
                "max_content_bytes": limits.max_content_bytes,
            })
            .to_string(),
        );
        return Ok(Exit::Ok);
    }
    printer.out_line(&format!("hub       {}", info.hub_id));
    printer.out_line(&format!(
        "version   {} (protocol {})",
        info.version, info.protocol_version
    ));
    printer.out_line(&format!(
        "address   {} (route {})",
        conn.hub_label(),
        conn.route()
    ));
    printer.out_line(&format!(
        "limits    {} at once, {} queued, prompts up to {} bytes",
        limits.max_concurrent, limits.queue_capacity, limits.max_content_bytes
    ));
    for p in &info.providers {
        let state = match (p.supported, p.has_credential) {
            (false, _) => "not supported by this hub".to_owned(),
            (true, true) => format!("ready ({})", p.credential_kind),
            (true, false) => format!(
                "no credential: run `helix-hub login {} --api-key` on the hub",
                p.name
            ),
        };
        printer.out_line(&format!("{:<14}{state}", p.name));
    }
    Ok(Exit::Ok)
}
