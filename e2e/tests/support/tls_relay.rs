//! A local iroh relay served over HTTPS with a certificate from a CA made for the test, as a
//! self-hosted relay with a private CA is: nobody trusts it unless told to (`[iroh] relay_ca`,
//! `helix --relay-ca`).

use std::{path::PathBuf, sync::Arc};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

pub struct TlsRelay {
    /// `https://127.0.0.1:<port>` (the certificate names the address).
    pub url: String,
    /// The CA's certificate, PEM.
    pub ca_pem: PathBuf,
    _dir: TempDir,
    _server: iroh_relay::server::Server,
}

impl TlsRelay {
    pub async fn start() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "helix test relay CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
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
        let localhost = (std::net::Ipv4Addr::LOCALHOST, 0);
        let mut relay = iroh_relay::server::RelayConfig::new(localhost);
        relay.tls = Some(iroh_relay::server::TlsConfig::new(
            localhost,
            iroh_relay::server::CertConfig::Manual { server_config },
        ));
        let mut config = iroh_relay::server::ServerConfig::default();
        config.relay = Some(relay);
        config.quic = None;
        let server = iroh_relay::server::Server::spawn(config).await.unwrap();
        let url = format!("https://{}", server.https_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = dir.path().join("relay-ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        Self {
            url,
            ca_pem,
            _dir: dir,
            _server: server,
        }
    }
}
