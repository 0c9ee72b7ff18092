//! `helix-local-cloud`: starts the local cloud, prints how to reach it on stdout, prints emailed
//! codes and progress on stderr, and stops cleanly on SIGINT or SIGTERM (a second signal exits at
//! once).
//!
//! stdout, once ready (then nothing more):
//!
//! ```text
//! HELIX_SUPABASE_URL=http://127.0.0.1:54321
//! HELIX_SUPABASE_ANON_KEY=<anon JWT>
//! HELIX_TEST_EMAIL=alice@example.com
//! HELIX_TEST_PASSWORD=<the first user's password>
//! HELIX_DATABASE_URL=postgres://postgres@127.0.0.1:5432/helix_localcloud_<pid>_0
//! ready
//! ```
//!
//! Exit codes: 0 stopped by a signal; 1 could not start, or broke while running; 2 bad usage.

use std::{
    io::Write,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use clap::Parser;
use helix_localcloud::{LocalCloud, Options, UserSpec, cloud::DEFAULT_PORT};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// A throwaway Supabase-like stack for Helix Mesh on one loopback origin: PostgREST (postrust)
/// over a fresh database with every migration, an Auth and a Realtime stand-in, and the web app.
/// The database is dropped when it stops.
#[derive(Debug, Parser)]
#[command(name = "helix-local-cloud", version)]
struct Args {
    /// The port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// The address to listen on. It has no TLS and prints its keys: keep it on loopback.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    listen: IpAddr,
    /// The web app's build served at / [default: web/dist of this repository].
    #[arg(long, value_name = "DIR")]
    web_dir: Option<PathBuf>,
    /// A user to create (repeatable); the first is printed as HELIX_TEST_EMAIL and
    /// HELIX_TEST_PASSWORD. Default: alice@example.com with a random password.
    #[arg(long = "user", value_name = "EMAIL:PASSWORD")]
    users: Vec<UserSpec>,
    /// How long access tokens are valid, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(5..=86_400))]
    jwt_expiry: u64,
}

/// `web/dist` of the repository this binary was built in.
fn default_web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/dist")
}

impl Args {
    fn options(&self) -> anyhow::Result<Options> {
        let web_dir = match &self.web_dir {
            Some(dir) if !dir.is_dir() => {
                anyhow::bail!("--web-dir {}: no such directory", dir.display())
            }
            Some(dir) => dir.clone(),
            None => default_web_dir(),
        };
        Ok(Options {
            listen: SocketAddr::new(self.listen, self.port),
            web_dir: Some(web_dir),
            users: self.users.clone(),
            jwt_expiry: Duration::from_secs(self.jwt_expiry),
        })
    }
}

/// The ready lines on stdout, flushed.
fn announce(cloud: &LocalCloud) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "HELIX_SUPABASE_URL={}", cloud.url())?;
    writeln!(out, "HELIX_SUPABASE_ANON_KEY={}", cloud.anon_key())?;
    if let Some(user) = cloud.users().first() {
        writeln!(out, "HELIX_TEST_EMAIL={}", user.email)?;
        writeln!(out, "HELIX_TEST_PASSWORD={}", user.password)?;
    }
    if let Some(url) = cloud.database_url() {
        writeln!(out, "HELIX_DATABASE_URL={url}")?;
    }
    writeln!(out, "ready")?;
    out.flush()
}

async fn run(args: Args) -> anyhow::Result<()> {
    let options = args.options()?;
    if !options.listen.ip().is_loopback() {
        warn!(listen = %options.listen.ip(), "listening beyond loopback: anyone who reaches it can sign in and read the database");
    }
    if let Some(dir) = &options.web_dir
        && !dir.join("index.html").is_file()
    {
        info!(dir = %dir.display(), "no web build there yet: / answers 404 until `npm run build` in web/");
    }
    let mut sigint = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut cloud = tokio::select! {
        started = LocalCloud::start(options) => started?,
        _ = sigint.recv() => return Ok(()),
        _ = sigterm.recv() => return Ok(()),
    };
    if let Some(mut mail) = cloud.take_mail() {
        tokio::spawn(async move {
            while let Some(email) = mail.recv().await {
                let _ = writeln!(std::io::stderr().lock(), "{email}");
            }
        });
    }
    announce(&cloud).context("writing the ready lines to stdout")?;
    let outcome = tokio::select! {
        _ = sigint.recv() => Ok(()),
        _ = sigterm.recv() => Ok(()),
        broken = cloud.failed() => Err(broken),
    };
    if let Err(e) = &outcome {
        error!(error = %e, "the local cloud broke; shutting down");
    }
    tokio::select! {
        () = cloud.shutdown() => {}
        _ = sigint.recv() => std::process::exit(130),
        _ = sigterm.recv() => std::process::exit(143),
    }
    outcome.map_err(Into::into)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("helix_localcloud=info,warn")),
        )
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "helix-local-cloud: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "helix-local-cloud",
            "--port",
            "0",
            "--user",
            "a@example.com:secret-1",
            "--user",
            "b@example.com:secret-2",
        ])
        .unwrap();
        let options = args.options().unwrap();
        assert_eq!(options.listen.port(), 0);
        assert!(options.listen.ip().is_loopback());
        assert_eq!(options.users.len(), 2);
        assert_eq!(options.jwt_expiry, Duration::from_secs(3600));
        assert!(Args::try_parse_from(["x", "--user", "nobody"]).is_err());
        assert!(Args::try_parse_from(["x", "--jwt-expiry", "1"]).is_err());
        let default = Args::try_parse_from(["x"]).unwrap();
        assert_eq!(default.port, 54321);
    }
}
