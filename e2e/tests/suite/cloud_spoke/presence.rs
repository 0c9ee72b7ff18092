//! A device reads where its hubs are from the hubs' own presence rows: `helix hubs` lists the
//! account's hubs seen within five minutes (`online_cloud_hubs`), and dialing by key finds the
//! addresses a hub last announced (`cloud_presence`).

use futures::StreamExt;
use helix_discovery::lookup::PresenceLookup;
use iroh::address_lookup::AddressLookup;

use super::hub::{Device, PlayedHub};
use crate::support::{cloud::TestCloud, json_lines};

/// What `helix hubs --json` says of a hub: its name here, id, whether the cloud has it online,
/// and its own name.
type Listed<'a> = (Option<&'a str>, &'a str, Option<bool>, Option<&'a str>);

#[tokio::test]
async fn helix_hubs_lists_the_hubs_online_in_the_cloud() {
    let cloud = TestCloud::start().await;
    let desk = PlayedHub::register(&cloud).await;
    let attic = PlayedHub::register(&cloud).await;
    let stale = PlayedHub::register(&cloud).await;
    desk.announce("desk-pc", None, &[]).await;
    attic.announce("attic\u{1b}[2J", None, &[]).await;
    stale.announce("stale", None, &[]).await;
    // Seen six minutes ago: no longer online (ONLINE_WITHIN is 300 s).
    cloud
        .db
        .admin(&format!(
            "update cloud_presence set last_seen = now() - interval '6 minutes' where hub_id = '{}'",
            stale.id()
        ))
        .await;
    let device = Device::new(&cloud, &desk).await;

    let done = device
        .run(&["--connect-timeout", "1s", "hubs", "--json"])
        .await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let rows = json_lines(&done.stdout);
    let listed: Vec<Listed> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str(),
                r["hub_id"].as_str().unwrap(),
                r["cloud_online"].as_bool(),
                r["hub_name"].as_str(),
            )
        })
        .collect();
    let (attic_id, desk_id) = (attic.id(), desk.id());
    assert_eq!(
        listed,
        vec![
            (None, attic_id.as_str(), Some(true), Some("attic\u{1b}[2J")),
            (Some("desk"), desk_id.as_str(), Some(true), Some("desk")),
        ],
        "{}",
        done.stdout
    );
    // The table shows the cloud's name without what would act on a terminal.
    let done = device.run(&["--connect-timeout", "1s", "hubs"]).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stdout
            .contains("online via cloud (attic[2J), not paired with this device"),
        "{}",
        done.stdout
    );
    assert!(!done.stdout.contains('\u{1b}') && !done.stdout.contains(&stale.id()[..10]));
}

#[tokio::test]
async fn dialing_by_key_finds_the_addresses_the_hub_announced() {
    let cloud = TestCloud::start().await;
    let hub = PlayedHub::register(&cloud).await;
    hub.announce(
        "desk",
        Some("http://127.0.0.1:3340/"),
        &["127.0.0.1:4242", "[::1]:4243", "not an address"],
    )
    .await;
    let lookup = PresenceLookup::new(cloud.rest().await);
    let item = lookup
        .resolve(hub.key.public())
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    let addr = item.to_endpoint_addr();
    assert_eq!(addr.id, hub.key.public());
    assert_eq!(
        addr.relay_urls().map(|u| u.to_string()).collect::<Vec<_>>(),
        vec!["http://127.0.0.1:3340/"]
    );
    let mut ips: Vec<String> = addr.ip_addrs().map(|a| a.to_string()).collect();
    ips.sort();
    assert_eq!(ips, vec!["127.0.0.1:4242", "[::1]:4243"]);

    // A hub with no presence row (of this account) is not found.
    let unknown = PlayedHub::register(&cloud).await;
    let missing = lookup
        .resolve(unknown.key.public())
        .unwrap()
        .next()
        .await
        .unwrap();
    assert!(missing.is_err());
}
