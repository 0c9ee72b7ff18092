//! Pairing through the cloud (`helix pair --via cloud TICKET`), end to end: a signed-in device
//! that never reached the hub over iroh seals the ticket's secret to the hub in a
//! `cloud_pairings` row; the real hub redeems it at its pairing desk and answers, signed. The
//! device is paired (and gets content keys: a command through the cloud works); a wrong
//! secret, a used one and an expired ticket are refused with why (exit 6); an answer the
//! ticket's hub did not sign is refused (exit 1) and pairs nothing.

use std::time::{Duration, Instant};

use helix_mesh::{
    cloud_payload::PairingAnswer,
    envelope_v2::{self, SealedHeader, SealedKind},
    ticket::{PairingSecret, Ticket},
};
use iroh::SecretKey;

use crate::support::{
    TestHub,
    bins::{Finished, pairing_ticket, run_helix, spoke},
    cloud::TestCloud,
    mock_anthropic::{MockAnthropic, Reply},
    relay::{device_key, hub_config, signed_in_spoke, wait_registered},
};

/// `helix pair --via cloud <ticket> --name desk` from the spoke on `dir`.
async fn pair_via_cloud(dir: &std::path::Path, ticket: &str) -> Finished {
    let mut cmd = spoke(dir);
    cmd.args(["pair", "--via", "cloud", ticket, "--name", "desk"]);
    run_helix(cmd, None).await
}

/// The hub's cloud route has registered it (a request for an unregistered hub is refused).
async fn registered(cloud: &TestCloud, hub: &TestHub) {
    wait_registered(&cloud.db, hub.hub().hub_id()).await;
}

#[tokio::test]
async fn a_device_pairs_through_the_cloud_and_its_commands_run() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["paired ", "by the cloud"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    registered(&cloud, &hub).await;
    let phone = signed_in_spoke(&cloud).await;
    let ticket = pairing_ticket(hub.path(), &[]).await;

    let done = pair_via_cloud(phone.path(), &ticket).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("through the cloud; waiting for its answer"),
        "{}",
        done.stderr
    );
    assert!(hub.hub().devices().is_paired(&device_key(&phone).public()));
    // The answer row holds nothing readable: the secret and the answer are sealed.
    let secret = match Ticket::decode(&ticket).unwrap() {
        Ticket::Pair { secret, .. } => secret.to_hex(),
        Ticket::Hub(_) => unreachable!(),
    };
    let stored = cloud
        .db
        .admin("select request || answer || status from cloud_pairings")
        .await;
    assert!(stored.ends_with("answered"), "{stored}");
    assert!(!stored.contains(&secret), "the secret is stored in clear");

    // Paired now: a command through the cloud runs and its output is readable here.
    let mut cmd = spoke(phone.path());
    cmd.args(["run", "--hub", "desk", "--via", "cloud", "hello"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "paired by the cloud"),
        "{}",
        done.stderr
    );

    // The ticket was used up: another device with it is refused, and not paired.
    let laptop = signed_in_spoke(&cloud).await;
    let done = pair_via_cloud(laptop.path(), &ticket).await;
    assert_eq!(done.code, Some(6), "{}", done.stderr);
    assert!(
        done.stderr.contains(
            "the hub refused to pair: this pairing ticket is unknown or was already used"
        ),
        "{}",
        done.stderr
    );
    assert!(!hub.hub().devices().is_paired(&device_key(&laptop).public()));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_or_an_expired_ticket_is_refused_with_why() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    registered(&cloud, &hub).await;
    let phone = signed_in_spoke(&cloud).await;

    // The hub's address with a secret it never issued (while a real one is outstanding).
    let ticket = pairing_ticket(hub.path(), &[]).await;
    let Ticket::Pair { addr, .. } = Ticket::decode(&ticket).unwrap() else {
        unreachable!()
    };
    let wrong = Ticket::Pair {
        addr,
        secret: PairingSecret([7; 32]),
    }
    .encode();
    let done = pair_via_cloud(phone.path(), &wrong).await;
    assert_eq!(done.code, Some(6), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("this pairing ticket is unknown or was already used"),
        "{}",
        done.stderr
    );
    assert!(!hub.hub().devices().is_paired(&device_key(&phone).public()));

    // A ticket that expired before the device used it.
    let short = pairing_ticket(hub.path(), &["--ttl", "1s"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let done = pair_via_cloud(phone.path(), &short).await;
    assert_eq!(done.code, Some(6), "{}", done.stderr);
    assert!(
        done.stderr.contains(
            "the hub refused to pair: this pairing ticket has expired: create a new one with `helix-hub pair`"
        ),
        "{}",
        done.stderr
    );
    assert!(!hub.hub().devices().is_paired(&device_key(&phone).public()));

    // The outstanding secret still pairs.
    let done = pair_via_cloud(phone.path(), &ticket).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    hub.shutdown().await;
}

#[tokio::test]
async fn an_answer_not_signed_by_the_tickets_hub_is_refused_and_pairs_nothing() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    registered(&cloud, &hub).await;
    let ticket = pairing_ticket(hub.path(), &[]).await;
    // The hub is gone (its secret with it): only a forger can answer now.
    let hub_dir = hub.stop_keeping_dir().await;
    let phone = signed_in_spoke(&cloud).await;
    let device = device_key(&phone).public();

    let waiting = tokio::spawn({
        let dir = phone.path().to_owned();
        async move { pair_via_cloud(&dir, &ticket).await }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let pairing_id = loop {
        let id = cloud
            .db
            .admin("select pairing_id from cloud_pairings where status = 'pending'")
            .await;
        if !id.is_empty() {
            break id;
        }
        assert!(Instant::now() < deadline, "no pairing request was written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Mallory (or the database) answers "accepted", sealed to the device with another key.
    let forged = envelope_v2::seal(
        &SecretKey::generate(),
        &device,
        &SealedHeader {
            kind: SealedKind::PairingAnswer,
            context: pairing_id.clone(),
            seq: 0,
            expires_at_ms: 0,
        },
        &PairingAnswer {
            accepted: true,
            hub_name: Some("evil".into()),
            reason: None,
        }
        .to_json()
        .unwrap(),
    )
    .unwrap();
    cloud
        .db
        .admin(&format!(
            "update cloud_pairings set answer = '{forged}', status = 'answered', answered_at = now() \
             where pairing_id = '{pairing_id}'"
        ))
        .await;
    let done = waiting.await.unwrap();
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(
        done.stderr.contains("the answer in the cloud is not hub ")
            && done.stderr.contains("nothing was paired"),
        "{}",
        done.stderr
    );
    // Nothing was saved as a known hub.
    let known = helix_spoke::config::SpokeConfig::new(phone.path().to_owned())
        .hubs()
        .unwrap();
    assert!(known.hubs.is_empty(), "{:?}", known.hubs.keys());
    drop(hub_dir);
}

/// The fields of a web pairing link's fragment (`URLSearchParams` decoding, enough for the
/// percent-encoding the hub writes).
fn fragment_fields(link: &str) -> std::collections::HashMap<String, String> {
    let (_, fragment) = link.split_once('#').expect("the link has a fragment");
    fragment
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            let mut bytes = Vec::new();
            let raw = v.as_bytes();
            let mut i = 0;
            while i < raw.len() {
                if raw[i] == b'%' {
                    bytes.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    bytes.push(raw[i]);
                    i += 1;
                }
            }
            (k.to_owned(), String::from_utf8(bytes).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_web_pairing_link_carries_the_hub_the_secret_and_the_cloud_in_its_fragment() {
    let cloud = TestCloud::start().await;
    let mock = MockAnthropic::start(Reply::text(&["ok"])).await;
    let hub = TestHub::start_in(cloud.hub_dir().await, hub_config(&mock)).await;
    registered(&cloud, &hub).await;

    // Without an app URL, or with one a browser would not run WebCrypto on: said, no ticket.
    let mut cmd = crate::support::bins::hub_cli(hub.path());
    cmd.args(["pair", "--web"]).env_remove("HELIX_WEB_APP_URL");
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(done.stderr.contains("--app-url"), "{}", done.stderr);
    let mut cmd = crate::support::bins::hub_cli(hub.path());
    cmd.args(["pair", "--web", "--app-url", "http://192.168.1.5:8080/"]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(done.stderr.contains("https://"), "{}", done.stderr);

    let mut cmd = crate::support::bins::hub_cli(hub.path());
    cmd.args([
        "pair",
        "--web",
        "--app-url",
        "https://helix.example.com/app/",
        "--json",
    ]);
    let done = run_helix(cmd, None).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let answer: serde_json::Value = serde_json::from_str(done.stdout.trim()).unwrap();
    let link = answer["link"].as_str().unwrap();
    assert!(
        link.starts_with("https://helix.example.com/app/#pair=1&"),
        "{link}"
    );
    let (before_fragment, _) = link.split_once('#').unwrap();
    assert!(
        !before_fragment.contains('?'),
        "nothing in the query: {link}"
    );
    let fields = fragment_fields(link);
    assert_eq!(fields["hub"], hub.hub().hub_id());
    assert_eq!(fields["url"], cloud.config.url);
    assert_eq!(fields["anon"], cloud.config.anon_key);
    let expires: i64 = fields["exp"].parse().unwrap();
    let now = helix_mesh::proto_ext::now_ms();
    assert!(
        expires > now && expires <= now + 11 * 60 * 1000,
        "{expires} vs {now}"
    );

    // The link's secret is a live one-time secret: a device pairs with it through the cloud.
    let secret = PairingSecret::from_hex(&fields["secret"]).unwrap();
    let ticket = Ticket::Pair {
        addr: iroh::EndpointAddr::new(hub.hub().hub_id().parse::<iroh::PublicKey>().unwrap()),
        secret,
    }
    .encode();
    let phone = signed_in_spoke(&cloud).await;
    let done = pair_via_cloud(phone.path(), &ticket).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(hub.hub().devices().is_paired(&device_key(&phone).public()));
}
