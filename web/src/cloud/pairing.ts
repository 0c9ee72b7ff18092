/**
 * Pairing this browser with a hub through the cloud (docs/protocol.md, "Pairing through the
 * cloud"): the link's one-time secret goes to the hub sealed to the hub's key in a
 * `cloud_pairings` row; the hub answers in the row, sealed to this device and signed by the
 * hub, and only an answer signed by the link's hub is believed.
 */
import type { SupabaseClient } from "@supabase/supabase-js";
import { CloudError } from "./commands";
import { openPairingAnswer, sealPairingRequest, type Device } from "./wire";

/** How long the request row lives (the database allows at most 10 minutes). */
const REQUEST_TTL_MS = 5 * 60 * 1000;
/** How long this side waits for the hub's answer. */
export const ANSWER_WAIT_MS = 120_000;
const ANSWER_POLL_MS = 1_000;

export type PairingResult =
  | { accepted: true; hubName: string }
  | { accepted: false; reason: string };

/** Asks `hub` to pair this device and waits for its signed answer. */
export async function pairThroughCloud(
  client: SupabaseClient,
  device: Device,
  hub: string,
  secret: string,
  deviceName: string,
  onProgress: (text: string) => void,
  signal?: AbortSignal,
): Promise<PairingResult> {
  const pairingId = crypto.randomUUID();
  const expiresAtMs = Date.now() + REQUEST_TTL_MS;
  const request = sealPairingRequest(device, hub, pairingId, { secret, deviceName }, expiresAtMs);
  const { error } = await client.from("cloud_pairings").insert(
    {
      pairing_id: pairingId,
      hub_id: hub,
      device_id: device.id,
      request,
      expires_at: new Date(expiresAtMs).toISOString(),
    },
  );
  if (error) {
    if (error.code === "23503") {
      throw new CloudError(
        "this hub has not connected to the cloud under this account: sign in with the account the hub uses (helix-hub cloud login), or restart the hub",
        error.code,
      );
    }
    if (error.code === "54000") {
      throw new CloudError(
        "8 pairing requests are already waiting: wait a few minutes and open the link again",
        error.code,
      );
    }
    throw new CloudError(`pairing through the cloud: ${error.message}`, error.code);
  }
  onProgress("asked the hub through the cloud; waiting for its answer…");
  const deadline = Date.now() + ANSWER_WAIT_MS;
  for (;;) {
    if (signal?.aborted) throw new CloudError("pairing cancelled");
    const { data, error: readError } = await client
      .from("cloud_pairings")
      .select("status,answer")
      .eq("pairing_id", pairingId)
      .limit(1);
    if (readError) throw new CloudError(`pairing through the cloud: ${readError.message}`);
    const answer = ((data ?? []) as { answer: string | null }[])[0]?.answer;
    if (answer) {
      let opened;
      try {
        opened = openPairingAnswer(device, hub, pairingId, answer, Date.now());
      } catch (e) {
        throw new CloudError(
          `the answer in the cloud is not this hub's: ${(e as Error).message}; nothing was paired`,
        );
      }
      return opened.accepted
        ? { accepted: true, hubName: opened.hubName ?? "" }
        : { accepted: false, reason: opened.reason ?? "no reason given" };
    }
    if (Date.now() + ANSWER_POLL_MS > deadline) {
      throw new CloudError(
        "the hub did not answer through the cloud within 2 minutes: is it running and signed in to the cloud?",
      );
    }
    await new Promise((r) => setTimeout(r, ANSWER_POLL_MS));
  }
}
