//! Local iroh relays: [`LocalRelay`], plain HTTP on 127.0.0.1 like `iroh-relay --dev`; and
//! [`TlsRelay`], served over HTTPS with a certificate from a CA made for the run, as a
//! self-hosted relay with a private CA is: nobody trusts it unless told to (`[iroh] relay_ca`,
//! `helix --relay-ca`). In the network lab it also answers QUIC address discovery, which
//! needs the same TLS, so the hub and the spoke learn their addresses outside their NATs.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

/// A local iroh relay server (plain HTTP on 127.0.0.1, no QUIC address discovery).
pub struct LocalRelay {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    _server: iroh_relay::server::Server,
}

impl std::fmt::Debug for LocalRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRelay")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl LocalRelay {
    pub async fn start() -> Self {
        let mut relay = iroh_relay::server::RelayConfig::new((Ipv4Addr::LOCALHOST, 0));
        relay.tls = None;
        let mut config = iroh_relay::server::ServerConfig::default();
        config.relay = Some(relay);
        config.quic = None;
        let server = iroh_relay::server::Server::spawn(config).await.unwrap();
        let url = format!("http://{}", server.http_addr().unwrap());
        Self {
            url,
            _server: server,
        }
    }
}

/// A relay over HTTPS with its own CA; its CA's file goes with it.
pub struct TlsRelay {
    /// `https://<address>:<port>` (the certificate names the address).
    pub url: String,
    /// The CA's certificate, PEM.
    pub ca_pem: PathBuf,
    _dir: TempDir,
    server: iroh_relay::server::Server,
}

impl std::fmt::Debug for TlsRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRelay")
            .field("url", &self.url)
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

impl TlsRelay {
    /// On 127.0.0.1 (a free port), without QUIC address discovery.
    pub async fn start() -> Self {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, None).await
    }

    /// On `ip:https_port`, and with QUIC address discovery on `ip:quic_port` when given (iroh
    /// asks port 7842, its default, of every relay in its map).
    pub async fn start_on(ip: IpAddr, https_port: u16, quic_port: Option<u16>) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "helix-testkit relay CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![ip.to_string()])
            .unwrap()
            .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
            .unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        let https = SocketAddr::new(ip, https_port);
        let mut relay = iroh_relay::server::RelayConfig::new(SocketAddr::new(ip, 0));
        relay.tls = Some(iroh_relay::server::TlsConfig::new(
            https,
            iroh_relay::server::CertConfig::Manual { server_config },
        ));
        let mut config = iroh_relay::server::ServerConfig::default();
        config.relay = Some(relay);
        // The QUIC server takes the relay's TLS.
        config.quic =
            quic_port.map(|port| iroh_relay::server::QuicConfig::new(SocketAddr::new(ip, port)));
        let server = iroh_relay::server::Server::spawn(config).await.unwrap();
        let url = format!("https://{}", server.https_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = dir.path().join("relay-ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        Self {
            url,
            ca_pem,
            _dir: dir,
            server,
        }
    }

    /// Stops the relay (on the runtime it runs on; dropping it there stops it too).
    pub async fn shutdown(self) {
        self.server.shutdown().await.unwrap();
    }
}
