//! `helix-hub status`: whether the hub runs, and which credentials are stored.

use std::path::Path;

use helix_hub::{credentials::CredentialStore, hub::read_runtime_info};
use helix_mesh::pb::Provider;

use crate::terminal::out;

pub(crate) fn status(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let stale = read_runtime_info(data_dir)?;
    let running = helix_discovery::local::is_running(data_dir);
    let runtime = stale.clone().filter(|_| running);
    let store = CredentialStore::in_dir(data_dir);
    let mut credentials = Vec::new();
    for p in Provider::ALL {
        let kind = store.credential_for(p)?.map(|c| c.kind());
        credentials.push((p, kind));
    }
    if json {
        let value = serde_json::json!({
            "data_dir": data_dir,
            "running": runtime.is_some(),
            "hub": runtime,
            "credentials": credentials.iter().map(|(p, k)| (p.name(), k)).collect::<std::collections::BTreeMap<_, _>>(),
        });
        out(&value.to_string());
        return Ok(());
    }
    out(&format!("data dir: {}", data_dir.display()));
    match runtime {
        Some(info) => out(&format!(
            "hub: running (pid {}, {} on {}, id {})",
            info.pid, info.version, info.grpc_addr, info.hub_id
        )),
        None => match stale {
            Some(info) => out(&format!(
                "hub: not running (stale hub.json from pid {}, which did not stop cleanly; start it with `helix-hub serve`)",
                info.pid
            )),
            None => out("hub: not running (start it with `helix-hub serve`)"),
        },
    }
    for (p, kind) in credentials {
        out(&format!(
            "{:<14} {}",
            p.name(),
            kind.unwrap_or("no credential")
        ));
    }
    Ok(())
}
