//! Two sites behind routers, a WAN between them and a relay on the WAN (see the crate's
//! drawing).

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use crate::{DelayLine, LabError, Netns};

/// How a site's router maps its hosts to the WAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// No NAT: the WAN routes to the site's addresses (a host with a public address).
    None,
    /// nftables `masquerade`: one mapping per local socket, its port kept when it is free
    /// (endpoint-independent mapping, the common home router); unsolicited packets from the
    /// WAN are dropped (a firewall on the router's input, as home routers have).
    Masquerade,
    /// nftables `masquerade random`: a new random port for every destination (endpoint-
    /// dependent, "symmetric" mapping, as carrier-grade and some corporate NATs do).
    Symmetric,
}

/// One site's router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteSpec {
    pub nat: Nat,
    /// Drop every UDP packet the router would forward (a network that allows only TCP).
    pub drop_udp: bool,
}

impl SiteSpec {
    pub fn nat(nat: Nat) -> Self {
        Self {
            nat,
            drop_udp: false,
        }
    }

    /// This router, dropping forwarded UDP.
    pub fn dropping_udp(self) -> Self {
        Self {
            drop_udp: true,
            ..self
        }
    }
}

/// The lab to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoSites {
    pub a: SiteSpec,
    pub b: SiteSpec,
    /// How long the WAN holds every packet that leaves a site (to the other site or to the
    /// relay): the round trip between the sites, and through the relay, is twice this.
    pub one_way_delay: Option<Duration>,
}

/// One site: a host behind its router.
#[derive(Debug)]
pub struct Site {
    /// Where a hub or a spoke runs.
    pub host: Netns,
    /// The site's address on the WAN (its NAT's, or the host's own without NAT).
    pub public_addr: Ipv4Addr,
    /// The host's address in its LAN.
    pub host_addr: Ipv4Addr,
    pub router: Netns,
    /// The router's own address on the WAN.
    pub router_addr: Ipv4Addr,
}

/// A built lab; everything in it is deleted on drop.
#[derive(Debug)]
pub struct Lab {
    /// Dropped first: stops before its namespace goes.
    delay: Option<DelayLine>,
    pub a: Site,
    pub b: Site,
    /// A host on the WAN, for a relay (or any server both sites reach).
    pub relay: Netns,
    pub relay_addr: Ipv4Addr,
    pub wan: Netns,
}

/// The WAN's side of the link to the relay.
const RELAY_NET: u8 = 3;

/// The UDP port site b's router echoes on, for [`Lab::round_trip`].
const ECHO_PORT: u16 = 7;

/// The table the packets to delay are routed by.
const DELAY_TABLE: &str = "100";

impl Lab {
    /// Builds the lab `spec` describes. Needs root; the error names what failed.
    pub fn two_sites(spec: TwoSites) -> Result<Lab, LabError> {
        crate::require_root()?;
        let wan = Netns::new("wan")?;
        wan.sysctl("net/ipv4/ip_forward", "1")?;
        let a = site(&wan, 1, spec.a)?;
        let b = site(&wan, 2, spec.b)?;
        let relay = Netns::new("relay")?;
        let relay_addr = Ipv4Addr::new(10, 99, RELAY_NET, 2);
        veth(
            (&wan, "to-relay", Ipv4Addr::new(10, 99, RELAY_NET, 1)),
            (&relay, "eth0", relay_addr),
        )?;
        relay.ip(&[
            "route",
            "add",
            "default",
            "via",
            &format!("10.99.{RELAY_NET}.1"),
        ])?;
        let delay = match spec.one_way_delay {
            Some(delay) => Some(delay_sites(&wan, delay)?),
            None => None,
        };
        Ok(Lab {
            delay,
            a,
            b,
            relay,
            relay_addr,
            wan,
        })
    }

    /// The delay line, if the lab has one.
    pub fn delay_line(&self) -> Option<&DelayLine> {
        self.delay.as_ref()
    }

    /// The median of `samples` UDP round trips from site a's host to site b's router (the
    /// path a direct connection between the sites takes, through the delay line both ways).
    pub fn round_trip(&self, samples: usize) -> Result<Duration, LabError> {
        let echo_at = SocketAddr::from((self.b.router_addr, ECHO_PORT));
        let echo = self
            .b
            .router
            .on_thread(move || UdpSocket::bind(echo_at))
            .map_err(|e| LabError::new(format!("binding a UDP echo in site b's router: {e}")))?;
        echo.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| LabError::new(e.to_string()))?;
        let echoing = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = echo.recv_from(&mut buf) {
                if echo.send_to(&buf[..n], from).is_err() {
                    return;
                }
            }
        });
        let measured = self
            .a
            .host
            .on_thread(move || {
                let probe = UdpSocket::bind(("0.0.0.0", 0))?;
                probe.set_read_timeout(Some(Duration::from_secs(2)))?;
                let mut rtts = Vec::with_capacity(samples);
                let mut buf = [0u8; 64];
                for i in 0..samples.max(1) {
                    let started = Instant::now();
                    probe.send_to(&i.to_be_bytes(), echo_at)?;
                    probe.recv(&mut buf)?;
                    rtts.push(started.elapsed());
                }
                rtts.sort();
                Ok(rtts[rtts.len() / 2])
            })
            .map_err(|e| LabError::new(format!("measuring the round trip between the sites: {e}")));
        let _ = echoing.join();
        measured
    }
}

/// Site `n`: its router on the WAN at 10.99.n.2, its host at 192.168.n.2.
fn site(wan: &Netns, n: u8, spec: SiteSpec) -> Result<Site, LabError> {
    let label = if n == 1 { "a" } else { "b" };
    let router = Netns::new(&format!("router-{label}"))?;
    let host = Netns::new(&format!("host-{label}"))?;
    router.sysctl("net/ipv4/ip_forward", "1")?;
    let public = Ipv4Addr::new(10, 99, n, 2);
    veth(
        (wan, &format!("to-{label}"), Ipv4Addr::new(10, 99, n, 1)),
        (&router, "wan", public),
    )?;
    let host_addr = Ipv4Addr::new(192, 168, n, 2);
    veth(
        (&router, "lan", Ipv4Addr::new(192, 168, n, 1)),
        (&host, "eth0", host_addr),
    )?;
    host.ip(&["route", "add", "default", "via", &format!("192.168.{n}.1")])?;
    router.ip(&["route", "add", "default", "via", &format!("10.99.{n}.1")])?;
    let mut rules = String::from("table ip lab {\n");
    let public_addr = match spec.nat {
        Nat::None => {
            wan.ip(&[
                "route",
                "add",
                &format!("192.168.{n}.0/24"),
                "via",
                &public.to_string(),
            ])?;
            host_addr
        }
        Nat::Masquerade | Nat::Symmetric => {
            let random = if spec.nat == Nat::Symmetric {
                " random"
            } else {
                ""
            };
            rules.push_str(&format!(
                "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"wan\" masquerade{random}\n  }}\n"
            ));
            // As a home router's firewall does: nothing new from the WAN reaches the router
            // itself (but the lab's UDP echo). Without it, a hole-punching packet that arrives
            // before the host has sent its own would be answered (port unreachable) and leave
            // a conntrack entry on the very address and port the host's mapping needs, so the
            // NAT would map the host's packets to another port and the hole would never open.
            rules.push_str(&format!(
                "  chain input {{\n    type filter hook input priority filter; policy accept;\n    iifname \"wan\" udp dport {ECHO_PORT} accept\n    iifname \"wan\" ct state new drop\n  }}\n"
            ));
            public
        }
    };
    if spec.drop_udp {
        rules.push_str(
            "  chain forward {\n    type filter hook forward priority filter; policy accept;\n    meta l4proto udp drop\n  }\n",
        );
    }
    rules.push_str("}\n");
    if spec.nat != Nat::None || spec.drop_udp {
        router.nft(&rules)?;
    }
    Ok(Site {
        host,
        public_addr,
        host_addr,
        router,
        router_addr: public,
    })
}

/// A veth pair between two namespaces, each end with its /24 address, up, without IPv6
/// link-local addresses (their duplicate-address detection ends a second or two after the
/// link is up, which iroh's network monitor takes for a major change and answers by
/// rebinding its sockets).
fn veth(
    (ns_a, dev_a, addr_a): (&Netns, &str, Ipv4Addr),
    (ns_b, dev_b, addr_b): (&Netns, &str, Ipv4Addr),
) -> Result<(), LabError> {
    ns_a.ip(&[
        "link",
        "add",
        dev_a,
        "type",
        "veth",
        "peer",
        "name",
        dev_b,
        "netns",
        ns_b.name(),
    ])?;
    for (ns, dev, addr) in [(ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)] {
        ns.ip(&["link", "set", dev, "addrgenmode", "none"])?;
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev])?;
        ns.ip(&["link", "set", dev, "up"])?;
    }
    Ok(())
}

/// Routes every packet that arrives from a site through a delay line in the WAN.
fn delay_sites(wan: &Netns, delay: Duration) -> Result<DelayLine, LabError> {
    let line = DelayLine::start(wan, "delay", delay)?;
    wan.ip(&["link", "set", "delay", "addrgenmode", "none"])?;
    wan.ip(&["link", "set", "delay", "up"])?;
    wan.ip(&[
        "route",
        "add",
        "default",
        "dev",
        "delay",
        "table",
        DELAY_TABLE,
    ])?;
    for dev in ["to-a", "to-b"] {
        wan.ip(&[
            "rule",
            "add",
            "iif",
            dev,
            "lookup",
            DELAY_TABLE,
            "pref",
            "100",
        ])?;
    }
    Ok(line)
}
