//! The mesh across a 40 ms WAN (issue 19): the hub in one site, the spoke in another, a relay
//! on the WAN between them ([`crate::wan`]). Every row is a ratio to the round trip between
//! the sites measured in the same run (UDP, through the same delay line), or for the stream
//! to the provider's own pace measured on the hub's host:
//!
//! 1. warm `Execute` → first output (an in-process client on one connection, the instant
//!    provider: its time is a few microseconds, nothing is subtracted), target ≤ 1.1 RTT;
//! 2. cold `helix run` → first stdout byte (the release binary started in site b), ≤ 2.2;
//! 3. the same `helix run` again a moment later, as a user repeats a command, ≤ 1.3;
//! 4. 200 chunks 2 ms apart, first to last stdout byte, ≤ 1.1 × the same on the hub's host;
//! 5. rows 1, 2 and 4 again with `--relay-only`.
//!
//! Needs root for the lab; without it the rows say why and the bench goes on.

use std::time::{Duration, Instant};

use helix_mesh::transport::{EndpointOptions, RelayChoice, Route};
use iroh::SecretKey;
use serde_json::{Value, json};

use crate::{
    Sizes,
    report::{Report, met, progress},
    stats::{Samples, median, ms},
    wan::{self, TimedRun, WanMesh, WanProvider},
};

/// The scenario's name in the report when it could not run.
const LAB: &str = "WAN lab (hub and spoke 40 ms apart, no NAT, relay on the WAN)";

/// The streamed answer: chunks, and the provider's pause between them.
const STREAM_CHUNKS: usize = 200;
const STREAM_PAUSE: Duration = Duration::from_millis(2);

/// The pause between a cold `helix run` and its repeat: a person reading the answer before
/// running the command again (the keeper, once started by the cold run, dials meanwhile).
const REPEAT_PAUSE: Duration = Duration::from_secs(1);

/// The targets, as multiples of the round trip (the stream's: of the provider's own pace).
const WARM_TARGET: f64 = 1.1;
const COLD_TARGET: f64 = 2.2;
const REPEAT_TARGET: f64 = 1.3;
const STREAM_TARGET: f64 = 1.1;

/// The prompt of the cold and repeat runs (the instant provider answers "ok").
const PROMPT: &str = "hello";

/// The routes measured: the report's label, the JSON keys' infix, the `helix` flags a user
/// gives for it, and the route its connection must be on.
const ROUTES: [(&str, &str, &[&str], Route); 2] = [
    ("direct", "direct", &[], Route::Direct),
    ("via the relay", "relay", &["--relay-only"], Route::Relay),
];

/// Builds the WAN lab and measures its rows; a lab that cannot be built or measured is
/// reported as such (with why), and the rest of the bench goes on.
pub async fn wan(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    progress("WAN lab: hub and spoke 40 ms apart, direct and through a relay…");
    let started = Instant::now();
    // Null until measured: the keys say the scenario was not measured, whatever stopped it.
    report.set("wan_rtt_ms", Value::Null);
    let outcome = match helix_netlab::require_root() {
        Err(why) => Err(format!("{why}")),
        Ok(()) => measure(report, sizes).await.map_err(|e| format!("{e:#}")),
    };
    if let Err(why) = outcome {
        report.row(LAB, "all WAN rows", format!("not measured: {why}"), "");
    }
    report.set("wan_seconds", json!(started.elapsed().as_secs_f64()));
    Ok(())
}

/// The lab's rows: the mesh up, then every measurement, then the mesh down.
async fn measure(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    let spoke_key = SecretKey::generate();
    let hub_host_key = SecretKey::generate();
    let mesh = WanMesh::start(&[
        (&spoke_key, "bench warm spoke"),
        (&hub_host_key, "bench on the hub's host"),
    ])
    .await?;
    let measured = measure_on(report, sizes, &mesh, spoke_key, hub_host_key).await;
    mesh.shutdown().await?;
    measured
}

async fn measure_on(
    report: &mut Report,
    sizes: &Sizes,
    mesh: &WanMesh,
    spoke_key: SecretKey,
    hub_host_key: SecretKey,
) -> anyhow::Result<()> {
    let probes = sizes.wan_rtt_probes;
    let rtt_before = tokio::task::block_in_place(|| mesh.lab.round_trip(probes))?;
    let hub_addr = mesh.hub_addr().await?;
    let keeper = helix_has_keeper(mesh).await?;

    // On the hub's own host: the hub's time, and the provider's pace, with no WAN.
    let on_host = EndpointOptions {
        relay: RelayChoice::Disabled,
        n0_discovery: false,
        mdns: false,
        udp_addr: None,
        ip_transports: true,
        portmapper: false,
        relay_ca: None,
    };
    let hub_host = wan::warm_first_outputs(
        &mesh.lab.a.host,
        on_host,
        hub_host_key,
        wan::direct_only(&hub_addr),
        sizes.wan_calls,
        Route::Direct,
    )?;
    let (stream_prompt, stream_words) = WanProvider::paced(STREAM_CHUNKS, STREAM_PAUSE);
    let mut on_hub_spans = Vec::new();
    for _ in 0..sizes.wan_streams {
        let run = wan::timed(mesh.helix_on_hub(&stream_prompt)?).await?;
        anyhow::ensure!(run.stdout == stream_words, "the stream on the hub's host");
        on_hub_spans.push(run.span());
    }
    let on_hub_span = median_duration(&on_hub_spans);

    let mut routes = Vec::new();
    for (label, key, flags, want) in ROUTES {
        progress(&format!("WAN lab: {label}…"));
        let warm = wan::warm_first_outputs(
            &mesh.lab.b.host,
            mesh.spoke_options(want == Route::Relay)?,
            spoke_key.clone(),
            hub_addr.clone(),
            sizes.wan_calls,
            want,
        )?;
        let cold_flags = [flags, if keeper { &["--no-keeper"][..] } else { &[] }].concat();
        let mut cold = Runs::default();
        for _ in 0..sizes.wan_runs {
            let cmd = mesh.helix_run(mesh.spoke_dir.path(), &cold_flags, PROMPT)?;
            cold.push(wan::timed(cmd).await?);
        }
        // The repeat: in a fresh copy of the paired config dir each time (so no keeper of an
        // earlier pair is there), the command a user runs, then the same one again.
        let (mut first_of_pair, mut repeat) = (Runs::default(), Runs::default());
        if want == Route::Direct {
            for _ in 0..sizes.wan_runs {
                let dir = tempfile::tempdir()?;
                wan::copy_dir(mesh.spoke_dir.path(), dir.path())?;
                first_of_pair.push(wan::timed(mesh.helix_run(dir.path(), flags, PROMPT)?).await?);
                tokio::time::sleep(REPEAT_PAUSE).await;
                repeat.push(wan::timed(mesh.helix_run(dir.path(), flags, PROMPT)?).await?);
                // Dropping the dir removes its keeper's socket: the keeper leaves.
            }
        }
        let mut stream = Runs::default();
        for _ in 0..sizes.wan_streams {
            let cmd = mesh.helix_run(mesh.spoke_dir.path(), flags, &stream_prompt)?;
            let run = wan::timed(cmd).await?;
            anyhow::ensure!(run.stdout == stream_words, "the stream {label}");
            stream.push(run);
        }
        routes.push(RouteResult {
            label,
            key,
            warm,
            cold,
            first_of_pair,
            repeat,
            stream,
        });
    }
    let rtt_after = tokio::task::block_in_place(|| mesh.lab.round_trip(probes))?;
    let rtt = (rtt_before + rtt_after) / 2;

    report.row(
        LAB,
        "UDP round trip between the sites, before / after",
        format!("{:.1} / {:.1} ms", ms(rtt_before), ms(rtt_after)),
        "the unit (RTT)",
    );
    report.set("wan_rtt_ms", json!(ms(rtt)));
    report.set("wan_rtt_before_ms", json!(ms(rtt_before)));
    report.set("wan_rtt_after_ms", json!(ms(rtt_after)));
    report.set("wan_helix_has_keeper", json!(keeper));
    report.row(
        "warm Execute → first output on the hub's own host (iroh, no WAN)",
        "p50 / p99",
        hub_host.first_output.p50_p99_ms(),
        "the hub's own time",
    );
    report.set(
        "wan_hub_host_first_output_ms",
        json!(ms(hub_host.first_output.p50())),
    );
    report.row(
        &format!(
            "{STREAM_CHUNKS} chunks {} ms apart on the hub's own host",
            STREAM_PAUSE.as_millis()
        ),
        "first → last byte, median",
        format!("{:.1} ms", ms(on_hub_span)),
        "the provider's pace",
    );
    report.set("wan_stream_on_hub_ms", json!(ms(on_hub_span)));
    for route in &routes {
        route.rows(report, rtt, on_hub_span, keeper);
    }
    Ok(())
}

/// Whether this build's `helix` has the keeper (and so `--no-keeper`).
async fn helix_has_keeper(mesh: &WanMesh) -> anyhow::Result<bool> {
    let out = mesh
        .helix(mesh.spoke_dir.path(), &["--help"])?
        .output()
        .await?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("--no-keeper"))
}

/// Some `helix` runs of one kind.
#[derive(Debug, Default)]
struct Runs(Vec<TimedRun>);

impl Runs {
    fn push(&mut self, run: TimedRun) {
        self.0.push(run);
    }

    fn first_bytes(&self) -> Samples {
        let mut samples = Samples::default();
        for run in &self.0 {
            samples.push(run.first_byte);
        }
        samples
    }

    /// How many connected on each route, e.g. `direct 5`, `iroh-relay 1, direct 4`; and how
    /// many the keeper's warm connection carried.
    fn routes(&self) -> (String, usize) {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        let mut kept = 0;
        for run in &self.0 {
            let (route, warm) = run.connected_route();
            *counts.entry(route.to_owned()).or_default() += 1;
            kept += usize::from(warm);
        }
        let text = counts
            .iter()
            .map(|(route, n)| format!("{route} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        (text, kept)
    }
}

/// What one route measured.
struct RouteResult {
    label: &'static str,
    key: &'static str,
    warm: wan::Warm,
    cold: Runs,
    first_of_pair: Runs,
    repeat: Runs,
    stream: Runs,
}

impl RouteResult {
    fn rows(&self, report: &mut Report, rtt: Duration, on_hub_span: Duration, keeper: bool) {
        let (label, key) = (self.label, self.key);
        ratio_row(
            report,
            &format!(
                "warm Execute → first output, {label} (route {})",
                self.warm.route
            ),
            &self.warm.first_output,
            rtt,
            WARM_TARGET,
            &format!("wan_{key}_warm_first_output"),
        );
        report.set(&format!("wan_{key}_warm_route"), json!(self.warm.route));
        let cold_flag = if keeper { ", --no-keeper" } else { "" };
        let (routes, _) = self.cold.routes();
        ratio_row(
            report,
            &format!("cold `helix run` → first byte, {label}{cold_flag} (routes: {routes})"),
            &self.cold.first_bytes(),
            rtt,
            COLD_TARGET,
            &format!("wan_{key}_cold_run"),
        );
        if !self.repeat.0.is_empty() {
            let (first_routes, _) = self.first_of_pair.routes();
            ratio_row(
                report,
                &format!(
                    "`helix run` in a new config dir (no keeper yet), {label} (routes: {first_routes})"
                ),
                &self.first_of_pair.first_bytes(),
                rtt,
                COLD_TARGET,
                &format!("wan_{key}_first_of_pair_run"),
            );
            let (routes, kept) = self.repeat.routes();
            let n = self.repeat.0.len();
            ratio_row(
                report,
                &format!(
                    "repeat `helix run` {} s later → first byte, {label} (routes: {routes}; kept warm {kept}/{n})",
                    REPEAT_PAUSE.as_secs()
                ),
                &self.repeat.first_bytes(),
                rtt,
                REPEAT_TARGET,
                &format!("wan_{key}_repeat_run"),
            );
            report.set(&format!("wan_{key}_repeat_kept_warm"), json!(kept));
        }
        let spans: Vec<Duration> = self.stream.0.iter().map(TimedRun::span).collect();
        let span = median_duration(&spans);
        let ratios: Vec<f64> = spans
            .iter()
            .map(|s| s.as_secs_f64() / on_hub_span.as_secs_f64())
            .collect();
        let ratio = span.as_secs_f64() / on_hub_span.as_secs_f64();
        let (routes, _) = self.stream.routes();
        report.row(
            &format!(
                "{STREAM_CHUNKS} chunks {} ms apart, first → last byte, {label} (routes: {routes})",
                STREAM_PAUSE.as_millis()
            ),
            "× on the hub's host (median; runs)",
            format!(
                "{ratio:.2} ({:.1} ms; {})",
                ms(span),
                crate::report::spread(&ratios)
            ),
            &format!("≤ {STREAM_TARGET}: {}", met(ratio <= STREAM_TARGET)),
        );
        report.set(&format!("wan_{key}_stream_ms"), json!(ms(span)));
        report.set(&format!("wan_{key}_stream_vs_on_hub"), json!(ratio));
    }
}

/// A row of `samples` as multiples of `rtt`: the median, and the 10th to 90th percentile.
fn ratio_row(
    report: &mut Report,
    scenario: &str,
    samples: &Samples,
    rtt: Duration,
    target: f64,
    key: &str,
) {
    let times = |q: f64| samples.quantile(q).as_secs_f64() / rtt.as_secs_f64();
    let ratio = times(0.5);
    report.row(
        scenario,
        "× RTT p50 (ms; p10–p90 × RTT)",
        format!(
            "{ratio:.2} ({:.1} ms; {:.2}–{:.2})",
            ms(samples.p50()),
            times(0.1),
            times(0.9)
        ),
        &format!("≤ {target}: {}", met(ratio <= target)),
    );
    report.set(&format!("{key}_ms"), json!(ms(samples.p50())));
    report.set(&format!("{key}_vs_rtt"), json!(ratio));
}

/// The median of some durations (the upper one of an even count).
fn median_duration(values: &[Duration]) -> Duration {
    Duration::from_secs_f64(median(values.iter().map(Duration::as_secs_f64)))
}
