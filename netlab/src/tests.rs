//! The lab's own checks. They need root; without it each says why and passes.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::Path,
    time::Duration,
};

use crate::{Lab, Nat, SiteSpec, TwoSites, netns::NETNS_DIR};

fn lab(a: SiteSpec, b: SiteSpec, one_way_delay: Option<Duration>) -> Option<Lab> {
    if let Err(why) = crate::require_root() {
        eprintln!("skipped: {why}");
        return None;
    }
    Some(
        Lab::two_sites(TwoSites {
            a,
            b,
            one_way_delay,
        })
        .unwrap(),
    )
}

/// The source addresses a UDP server on the relay host sees from one socket in site a that
/// sends to two of its ports.
fn mapped_sources(lab: &Lab) -> Vec<SocketAddr> {
    let relay = lab.relay_addr;
    let servers: Vec<UdpSocket> = [9000u16, 9001]
        .into_iter()
        .map(|port| {
            let socket = lab
                .relay
                .on_thread(move || UdpSocket::bind((relay, port)))
                .unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            socket
        })
        .collect();
    lab.a
        .host
        .on_thread(move || {
            let client = UdpSocket::bind(("0.0.0.0", 40_000))?;
            client.send_to(b"one", (relay, 9000))?;
            client.send_to(b"two", (relay, 9001))?;
            Ok(())
        })
        .unwrap();
    servers
        .iter()
        .map(|server| {
            let mut buf = [0u8; 16];
            server.recv_from(&mut buf).unwrap().1
        })
        .collect()
}

#[test]
fn masquerade_keeps_one_port_for_every_destination_and_symmetric_does_not() {
    let Some(lab) = lab(
        SiteSpec::nat(Nat::Masquerade),
        SiteSpec::nat(Nat::Symmetric),
        None,
    ) else {
        return;
    };
    let seen = mapped_sources(&lab);
    let public = SocketAddr::from((Ipv4Addr::new(10, 99, 1, 2), 40_000));
    assert_eq!(
        seen,
        vec![public, public],
        "masquerade: port kept, one mapping"
    );

    // The same from site b's symmetric NAT: two destinations, two ports (of 64k, the odds of
    // a random repeat are negligible).
    let relay = lab.relay_addr;
    let servers: Vec<UdpSocket> = [9100u16, 9101]
        .into_iter()
        .map(|port| {
            let s = lab
                .relay
                .on_thread(move || UdpSocket::bind((relay, port)))
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
        .collect();
    lab.b
        .host
        .on_thread(move || {
            let client = UdpSocket::bind(("0.0.0.0", 40_000))?;
            client.send_to(b"one", (relay, 9100))?;
            client.send_to(b"two", (relay, 9101))?;
            Ok(())
        })
        .unwrap();
    let seen: Vec<SocketAddr> = servers
        .iter()
        .map(|s| s.recv_from(&mut [0u8; 16]).unwrap().1)
        .collect();
    assert!(
        seen.iter().all(|s| s.ip() == Ipv4Addr::new(10, 99, 2, 2)),
        "{seen:?}"
    );
    assert_ne!(
        seen[0].port(),
        seen[1].port(),
        "symmetric: a port per destination"
    );

    // Unsolicited packets from the WAN do not reach a NATed host.
    let host_a = lab.a.host_addr;
    let inbound = lab.relay.on_thread(move || {
        let stream =
            TcpStream::connect_timeout(&SocketAddr::from((host_a, 22)), Duration::from_millis(300));
        Ok(stream.is_ok())
    });
    assert!(!inbound.unwrap());
}

#[test]
fn a_router_that_drops_udp_still_forwards_tcp() {
    let Some(lab) = lab(
        SiteSpec::nat(Nat::Masquerade).dropping_udp(),
        SiteSpec::nat(Nat::None),
        None,
    ) else {
        return;
    };
    let relay = lab.relay_addr;
    let udp = lab
        .relay
        .on_thread(move || UdpSocket::bind((relay, 9000)))
        .unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let tcp = lab
        .relay
        .on_thread(move || TcpListener::bind((relay, 9000)))
        .unwrap();
    lab.a
        .host
        .on_thread(move || {
            UdpSocket::bind(("0.0.0.0", 0))?.send_to(b"lost", (relay, 9000))?;
            TcpStream::connect((relay, 9000))?;
            Ok(())
        })
        .unwrap();
    assert!(udp.recv_from(&mut [0u8; 16]).is_err(), "UDP got through");
    let (_, peer) = tcp.accept().unwrap();
    assert_eq!(peer.ip(), Ipv4Addr::new(10, 99, 1, 2));
    // Site b has no NAT: the WAN sees its host's own address.
    lab.b
        .host
        .on_thread(move || {
            UdpSocket::bind(("0.0.0.0", 0))?.send_to(b"kept", (relay, 9000))?;
            Ok(())
        })
        .unwrap();
    let (_, from) = udp.recv_from(&mut [0u8; 16]).unwrap();
    assert_eq!(from.ip(), lab.b.host_addr);
}

#[test]
fn the_delay_line_holds_every_packet_and_nothing_routes_out_of_the_lab() {
    let Some(lab) = lab(
        SiteSpec::nat(Nat::Masquerade),
        SiteSpec::nat(Nat::Masquerade),
        Some(Duration::from_millis(20)),
    ) else {
        return;
    };
    let rtt = lab.round_trip(5).unwrap();
    assert!(
        rtt >= Duration::from_millis(40) && rtt < Duration::from_millis(60),
        "{rtt:?}"
    );
    let line = lab.delay_line().unwrap();
    assert!(line.delayed() >= 10, "{}", line.delayed());
    assert_eq!(line.dropped(), 0);

    // The WAN has no route to anywhere else, and a host's loopback is its own.
    assert!(lab.wan.ip(&["route", "get", "1.1.1.1"]).is_err());
    let outside = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = outside.local_addr().unwrap().port();
    let reached = lab
        .a
        .host
        .on_thread(move || Ok(TcpStream::connect(("127.0.0.1", port)).is_ok()))
        .unwrap();
    assert!(!reached, "the lab reached this machine's loopback");

    let names: Vec<String> = [&lab.wan, &lab.relay, &lab.a.host, &lab.b.router]
        .iter()
        .map(|ns| ns.name().to_owned())
        .collect();
    drop(lab);
    for name in names {
        assert!(
            !Path::new(NETNS_DIR).join(&name).exists(),
            "{name} outlived the lab"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_in_a_namespace_binds_there_and_a_process_starts_there() {
    let Some(lab) = lab(
        SiteSpec::nat(Nat::Masquerade),
        SiteSpec::nat(Nat::None),
        None,
    ) else {
        return;
    };
    let runtime = lab.relay.runtime(1).unwrap();
    let relay = lab.relay_addr;
    let listener = runtime
        .run(async move { tokio::net::TcpListener::bind((relay, 0)).await })
        .await
        .unwrap()
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["-4", "-o", "addr", "show", "dev", "eth0"]);
    lab.a.host.enter_command(&mut cmd);
    let out = cmd.output().await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("192.168.1.2/24"),
        "{out:?}"
    );
    let mut cmd = tokio::process::Command::new("bash");
    cmd.args([
        "-c",
        &format!("exec 3<>/dev/tcp/{}/{}", addr.ip(), addr.port()),
    ]);
    lab.a.host.enter_command(&mut cmd);
    assert!(cmd.status().await.unwrap().success());
    let (_, peer) = listener.accept().await.unwrap();
    assert_eq!(peer.ip(), Ipv4Addr::new(10, 99, 1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_carries_a_lab_hosts_connection_to_a_server_on_this_machines_loopback() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let Some(lab) = lab(
        SiteSpec::nat(Nat::Masquerade),
        SiteSpec::nat(Nat::None),
        None,
    ) else {
        return;
    };
    // An upper-casing server on this process's loopback, which no lab host can route to.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = server.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = server.accept().await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        stream.write_all(&buf.to_ascii_uppercase()).await.unwrap();
    });
    let relay = lab.relay.runtime(1).unwrap();
    let forward = crate::Forward::start(&relay, SocketAddr::from((lab.relay_addr, 0)), target)
        .await
        .unwrap();
    assert_eq!(forward.addr().ip(), lab.relay_addr);

    // From site a's host, behind its NAT: the forward answers with the server's reply.
    let mut cmd = tokio::process::Command::new("bash");
    cmd.args([
        "-c",
        &format!(
            "exec 3<>/dev/tcp/{}/{}; printf hello >&3; head -c 5 <&3",
            forward.addr().ip(),
            forward.addr().port()
        ),
    ]);
    lab.a.host.enter_command(&mut cmd);
    let out = cmd.output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO", "{out:?}");
    // The loopback server itself stays out of the lab's reach.
    let mut cmd = tokio::process::Command::new("bash");
    cmd.args([
        "-c",
        &format!("exec 3<>/dev/tcp/127.0.0.1/{}", target.port()),
    ]);
    lab.a.host.enter_command(&mut cmd);
    assert!(!cmd.status().await.unwrap().success());
}
