//! The WAN lab's relay: an in-process iroh relay served over HTTPS with a certificate from a
//! CA the bench makes, as a self-hosted relay with a private CA is (the hub trusts it through
//! `[iroh] relay_ca`, `helix` through `--relay-ca`), answering QUIC address discovery with the
//! same TLS.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
};

use anyhow::Context;
use iroh_relay::server::{CertConfig, QuicConfig, RelayConfig, Server, ServerConfig, TlsConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

/// A running relay; its CA's file goes with it.
pub struct TlsRelay {
    /// `https://<address>:<port>` (the certificate names the address).
    pub url: String,
    /// The CA's certificate, PEM.
    pub ca_pem: PathBuf,
    server: Server,
    _dir: TempDir,
}

impl TlsRelay {
    /// Serves the relay on `ip:https_port` and QUIC address discovery on `ip:quic_port`, on
    /// the current runtime (whose threads' network namespace is where it listens).
    pub async fn start(ip: IpAddr, https_port: u16, quic_port: u16) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "helix-bench relay CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec![ip.to_string()])?
            .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )?;
        let mut relay = RelayConfig::new(SocketAddr::new(ip, 0));
        relay.tls = Some(TlsConfig::new(
            SocketAddr::new(ip, https_port),
            CertConfig::Manual { server_config },
        ));
        let mut config = ServerConfig::default();
        config.relay = Some(relay);
        // The QUIC server takes the relay's TLS.
        config.quic = Some(QuicConfig::new(SocketAddr::new(ip, quic_port)));
        let server = Server::spawn(config)
            .await
            .context("starting the lab's relay")?;
        let url = format!(
            "https://{}",
            server
                .https_addr()
                .context("the relay has no HTTPS address")?
        );
        let dir = tempfile::tempdir()?;
        let ca_pem = dir.path().join("relay-ca.pem");
        std::fs::write(&ca_pem, ca.pem())?;
        Ok(Self {
            url,
            ca_pem,
            server,
            _dir: dir,
        })
    }

    /// Stops the relay (on the runtime it runs on).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.server
            .shutdown()
            .await
            .context("stopping the lab's relay")
    }
}
