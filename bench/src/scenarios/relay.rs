//! The cloud route and an idle hub's requests to the cloud.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::{
    Sizes, relay_bench,
    report::{Report, met, progress},
};

/// The most requests an hour an idle hub may make to Supabase while Realtime is up.
const IDLE_BUDGET: f64 = 60.0;

/// How long the stand-in for Supabase Auth takes to refresh an expired session.
const REFRESH_DELAY: Duration = Duration::from_secs(1);

/// The cloud route, when PostgreSQL and postrust are available.
pub async fn relay_scenario(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    progress("the cloud route (PostgreSQL + postrust)…");
    match relay_bench::available().await {
        Ok(()) => {
            let poll = Duration::from_millis(250);
            let r = relay_bench::run(poll, None).await.context("cloud route")?;
            let fallback = r.fallback.as_secs_f64();
            let label = "cloud route (hub without iroh route)";
            report.row(
                label,
                "spoke falls back after",
                format!("{fallback:.2} s"),
                &format!("≤ 3 s: {}", met(fallback <= 3.0)),
            );
            report.row(
                label,
                "start → first output (safety poll 250 ms)",
                format!("{:.2} s", r.first_output.as_secs_f64()),
                "",
            );
            report.row(
                label,
                "whole command",
                format!("{:.2} s", r.total.as_secs_f64()),
                "",
            );
            report.set("fallback_seconds", json!(fallback));
            // The same with an expired session: the spoke refreshes it while it dials.
            let slow = relay_bench::run(poll, Some(REFRESH_DELAY))
                .await
                .context("cloud route, session refreshed")?;
            let refreshing = slow.fallback.as_secs_f64();
            report.row(
                label,
                &format!(
                    "spoke falls back after, its expired session refreshed meanwhile ({} s)",
                    REFRESH_DELAY.as_secs()
                ),
                format!("{refreshing:.2} s"),
                &format!("≤ 3 s: {}", met(refreshing <= 3.0)),
            );
            report.set("fallback_refreshing_session_seconds", json!(refreshing));
            report.set(
                "relay_first_output_seconds",
                json!(r.first_output.as_secs_f64()),
            );
            progress(&format!(
                "an idle hub with cloud settings, Realtime up then down, {} s each…",
                sizes.idle_cloud.as_secs()
            ));
            for realtime in [true, false] {
                let idle = relay_bench::idle(Duration::from_secs(2), sizes.idle_cloud, realtime)
                    .await
                    .context("idle hub with cloud settings")?;
                let per_hour = idle.per_hour();
                let breakdown: Vec<String> = idle
                    .requests
                    .iter()
                    .map(|(what, n)| format!("{what} ×{n}"))
                    .collect();
                let (label, key, target) = match realtime {
                    true => (
                        "idle hub with cloud settings (Realtime up)",
                        "idle_rest_requests_per_hour",
                        format!("≤ {IDLE_BUDGET}: {}", met(per_hour <= IDLE_BUDGET)),
                    ),
                    false => (
                        "idle hub with cloud settings (Realtime down)",
                        "idle_rest_requests_per_hour_realtime_down",
                        "no polling storm".to_owned(),
                    ),
                };
                let counted = match idle.time_scale {
                    1 => format!("counted over {} s", idle.window.as_secs()),
                    scale => format!(
                        "counted over {} s with the schedule {scale}× faster",
                        idle.window.as_secs()
                    ),
                };
                report.row(
                    label,
                    &format!("Supabase requests/hour ({counted})"),
                    format!("{per_hour:.0} ({})", breakdown.join(", ")),
                    &target,
                );
                report.set(key, json!(per_hour));
            }
        }
        Err(why) => {
            report.row(
                "cloud route",
                "fallback; submit → first output",
                format!("not measured: {why}"),
                "fallback ≤ 3 s",
            );
            report.set("fallback_seconds", Value::Null);
            report.set("fallback_refreshing_session_seconds", Value::Null);
            report.set("idle_rest_requests_per_hour", Value::Null);
            report.set("idle_rest_requests_per_hour_realtime_down", Value::Null);
        }
    }
    Ok(())
}
