/**
 * The web spoke in a real browser (Debian's Chromium) against the local cloud and a real hub:
 * pairing, streaming, a second device, the CLI, reload and network loss mid-stream, cancel,
 * a hub that is offline when the prompt is sent, a spliced event, the offline shell.
 * Screenshots go to web/test-results/.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import type { Browser, BrowserContext, Page } from "playwright-core";
import {
  CliDevice,
  collectProblems,
  eventually,
  Hub,
  launchBrowser,
  LocalCloud,
  newDevice,
  pairBrowser,
  screenshot,
} from "./harness";
import { spliceEvent } from "./splice";

const echo = (prompt: string) => `(helix-dev-provider echo) You said: ${prompt}\n`;
/** A prompt of `n` words: at 60 ms a word it streams for n × 60 ms. */
const words = (tag: string, n: number) => `${tag} ${Array.from({ length: n }, (_, i) => `w${i}`).join(" ")}`;

let cloud: LocalCloud;
let hub: Hub;
let browser: Browser;
let phone: BrowserContext;
let page: Page;
let problems: string[];

beforeAll(async () => {
  cloud = await LocalCloud.start();
  hub = await Hub.start(cloud, { wordDelayMs: 60 });
  await hub.waitOnline(cloud);
  browser = await launchBrowser();
  phone = await newDevice(browser, "phone");
  page = await phone.newPage();
  problems = collectProblems(page);
});

// Every test leaves a screenshot of the phone's page as it ended (web/test-results/).
afterEach(async (context) => {
  const name = context.task.name.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "").slice(0, 60);
  if (page && !page.isClosed()) await screenshot(page, `end-${name}`).catch(() => undefined);
});

afterAll(async () => {
  await browser?.close();
  await hub?.stop();
  await cloud?.stop();
});

/** The hub's page (from a command's page, or the hub's). */
async function toHub(p: Page): Promise<void> {
  const url = p.url().split("/c/")[0] ?? "";
  if (url !== p.url()) await p.goto(url);
  await p.getByRole("heading", { name: "History" }).waitFor();
}

/** Sends a prompt from the hub page; resolves with the command's id once its page opened. */
async function send(p: Page, prompt: string): Promise<string> {
  await toHub(p);
  await p.getByPlaceholder("Ask the agent on your hub…").fill(prompt);
  await p.getByRole("button", { name: "Run" }).click();
  await p.waitForURL(/#\/hub\/[0-9a-f]{64}\/c\/[0-9a-f-]{36}$/);
  return p.url().split("/c/")[1] ?? "";
}

const raw = (p: Page) => p.getByTestId("raw-output").textContent().then((t) => t ?? "");
const status = (p: Page) => p.getByTestId("status").textContent().then((t) => t ?? "");

async function finished(p: Page, expected = "completed"): Promise<void> {
  await eventually(async () => (await status(p)).startsWith(expected), `status ${expected} (now: ${await status(p)})`, 60_000);
}

describe("the web spoke", () => {
  test("pairs a phone through the cloud and streams a prompt's answer as it comes", async () => {
    await pairBrowser(page, cloud, hub, "phone");
    // The pairing secret is out of the address bar and of every history entry.
    const hubUrl = page.url();
    expect(hubUrl).not.toContain("secret=");
    for (let back = 0; back < 2; back++) {
      await page.goBack().catch(() => null);
      expect(page.url()).not.toContain("secret=");
    }
    await page.goto(hubUrl);
    await page.getByRole("heading", { name: "History" }).waitFor();
    await screenshot(page, "phone-hub");
    const prompt = words("stream", 40);
    await send(page, prompt);
    // Part of the answer shows before all of it: it streams.
    const partial = await eventually(async () => {
      const text = await raw(page);
      return text.length > 0 && text.length < echo(prompt).length ? text : undefined;
    }, "a partial answer");
    expect(echo(prompt).startsWith(partial)).toBe(true);
    await screenshot(page, "phone-streaming");
    await finished(page);
    expect(await raw(page)).toBe(echo(prompt));
    await expect(page.getByTestId("output").locator("p").first().textContent()).resolves.toContain("You said: stream");
    await screenshot(page, "phone-command");
  });

  test("a second paired browser sees the same command live, and both see the history", async () => {
    const desktop = await newDevice(browser, "desktop");
    const second = await desktop.newPage();
    await pairBrowser(second, cloud, hub, "laptop");
    const prompt = words("shared", 50);
    const id = await send(page, prompt);
    await second.goto(page.url());
    await eventually(async () => (await raw(second)).length > 0, "the second device to show output");
    expect((await raw(second)).length).toBeLessThan(echo(prompt).length);
    await finished(second);
    expect(await raw(second)).toBe(echo(prompt));
    await toHub(second);
    await second.locator(`[data-command-id="${id}"]`).waitFor();
    await screenshot(second, "desktop-history");
    await desktop.close();
  });

  test("the CLI follows a browser-sent command, and the browser a CLI-sent one", async () => {
    const cli = await CliDevice.pair(cloud, hub);
    try {
      const prompt = words("from-browser", 10);
      const id = await send(page, prompt);
      const attached = await cli.run(["attach", "--hub", "desk", "--via", "cloud", id]);
      expect(attached.code, attached.stderr).toBe(0);
      expect(attached.stdout).toContain(echo(prompt).trim());

      const cliPrompt = words("from-cli", 8);
      const sent = await cli.run(["run", "--hub", "desk", "--via", "cloud", cliPrompt]);
      expect(sent.code, sent.stderr).toBe(0);
      await toHub(page);
      const entry = page.locator("ul.history a", { hasText: "from-cli" });
      await entry.waitFor({ timeout: 30_000 });
      await entry.click();
      await finished(page);
      expect(await raw(page)).toBe(echo(cliPrompt));

      // One history of every route: a command through the hub's local listener shows too.
      const localPrompt = words("from-local", 5);
      expect((await hub.localRun(localPrompt)).trim()).toBe(echo(localPrompt).trim());
      await toHub(page);
      const local = page.locator("ul.history a", { hasText: "from-local" });
      await local.waitFor({ timeout: 30_000 });
      await expect(local.textContent()).resolves.toContain("the hub");
      await local.click();
      await finished(page);
      expect(await raw(page)).toBe(echo(localPrompt));
    } finally {
      cli.cleanup();
    }
  });

  test("a conversation started in the CLI goes on from the phone", async () => {
    const cli = await CliDevice.pair(cloud, hub);
    try {
      const first = await cli.run(["run", "--hub", "desk", "--via", "cloud", "--session", "trip", "plan a trip"]);
      expect(first.code, first.stderr).toBe(0);
      await toHub(page);
      const entry = page.locator("ul.history a", { hasText: "plan a trip" });
      await entry.waitFor({ timeout: 30_000 });
      await expect(entry.textContent()).resolves.toContain("session trip");
      await entry.click();
      await finished(page);
      await page.getByRole("link", { name: "Continue this conversation" }).click();
      await expect(page.getByLabel("Session").inputValue()).resolves.toBe("trip");
      await send(page, "and a rainy day");
      await finished(page);
      // The hub gave the provider the CLI's turn first (the dev provider says how many).
      expect(await raw(page)).toBe("(helix-dev-provider echo, after 1 earlier turn(s)) You said: and a rainy day\n");
      const session = await hub.session("trip");
      expect(session.total_turns).toBe(2);
      expect(session.turns.map((t) => t.prompt)).toEqual(["plan a trip", "and a rainy day"]);
      const phoneId = (await page.locator("footer code").getAttribute("title")) ?? "";
      expect(session.turns[1]?.source_device_id).toBe(phoneId);
      expect(session.turns[0]?.source_device_id).not.toBe(phoneId);
    } finally {
      cli.cleanup();
    }
  });

  test("a reload mid-stream resumes after the last event shown: the answer is whole, nothing twice", async () => {
        const prompt = words("reload", 60);
    await send(page, prompt);
    await eventually(async () => (await raw(page)).length > 20, "some output before the reload");
    // After the reload the first read of events starts after the last one shown, not at 0.
    const cursors: number[] = [];
    const onRequest = (request: { url(): string }) => {
      const match = /cloud_command_events\?.*seq=gt\.(\d+)/.exec(decodeURIComponent(request.url()));
      if (match?.[1]) cursors.push(Number(match[1]));
    };
    await page.reload();
    page.on("request", onRequest);
    await finished(page);
    page.off("request", onRequest);
    expect(await raw(page)).toBe(echo(prompt));
    expect(cursors[0], `event reads after the reload: ${cursors.join(", ")}`).toBeGreaterThan(0);
  });

  test("losing the network mid-stream: the answer completes whole when it comes back", async () => {
        const prompt = words("offline", 60);
    await send(page, prompt);
    await eventually(async () => (await raw(page)).length > 20, "some output before going offline");
    await phone.setOffline(true);
    await page.waitForTimeout(1500);
    await phone.setOffline(false);
    await finished(page);
    expect(await raw(page)).toBe(echo(prompt));
  });

  test("cancel stops a running command", async () => {
        const prompt = words("cancel", 200);
    await send(page, prompt);
    await eventually(async () => (await raw(page)).length > 0, "output before cancelling");
    await page.getByRole("button", { name: "Cancel" }).click();
    await finished(page, "cancelled");
    expect((await raw(page)).length).toBeLessThan(echo(prompt).length);
    await expect(page.getByRole("button", { name: "Cancel" }).count()).resolves.toBe(0);
  });

  test("a prompt sent while the hub is offline waits for it, then runs and streams", async () => {
        await hub.stopServing();
    await hub.waitOnline(cloud, false).catch(() => undefined);
    const prompt = words("waiting", 10);
    await send(page, prompt);
    await eventually(async () => (await status(page)).startsWith("waiting for the hub"), "waiting for the hub");
    await page.waitForTimeout(1000);
    expect(await raw(page)).toBe("");
    await screenshot(page, "phone-waiting");
    await hub.startServing();
    await finished(page);
    expect(await raw(page)).toBe(echo(prompt));
  });

  test("agent output is Markdown rendered without raw HTML", async () => {
        const prompt = "**bold** <img src=x onerror=alert(1)> <script>window.pwned=1</script> [x](javascript:alert(1))";
    await send(page, prompt);
    await finished(page);
    const output = page.getByTestId("output");
    await expect(output.locator("strong").first().textContent()).resolves.toBe("bold");
    await expect(output.locator("img, script").count()).resolves.toBe(0);
    await expect(output.locator('a[href^="javascript"]').count()).resolves.toBe(0);
    await expect(page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).resolves.toBeUndefined();
    await expect(output.textContent()).resolves.toContain("<img src=x onerror=alert(1)>");
    await screenshot(page, "phone-markdown");
    await toHub(page);
    await screenshot(page, "phone-history");
  });

  test("a spliced event is refused with a visible error, and nothing after it is shown", async () => {
        const donor = await send(page, words("donor", 6));
    await finished(page);
        const victim = await send(page, words("victim", 6));
    await finished(page);
    // Reloaded, the view that saw it end reads the end again, and shows it once.
    const whole = await raw(page);
    await page.reload();
    await finished(page);
    expect(await raw(page)).toBe(whole);
    await expect(page.getByTestId("refusal").count()).resolves.toBe(0);

    await spliceEvent(cloud, { from: donor, to: victim, seq: 3 });
    // A new tab of this device (no resume state: sessionStorage is per tab) reads it all.
    const tab = await phone.newPage();
    await tab.goto(page.url());
    const refusal = tab.getByTestId("refusal");
    await refusal.waitFor({ timeout: 30_000 });
    await expect(refusal.textContent()).resolves.toContain(`refused event 3 of this command: spliced envelope: it belongs to command ${donor}, not ${victim}`);
    const shown = await raw(tab);
    expect(echo(words("victim", 6)).startsWith(shown)).toBe(true);
    expect(shown.length).toBeLessThan(echo(words("victim", 6)).length);
    await screenshot(tab, "phone-refused");
    await tab.close();
  });

  test("signing in with an emailed code, on a device that has not paired yet", async () => {
    const laptop = await newDevice(browser, "desktop");
    const tab = await laptop.newPage();
    // A pairing link brings the project; this device signs in with a code, and does not pair.
    await tab.goto(await hub.pairLink(cloud.url + "/"));
    await tab.getByLabel("Email").fill(cloud.email);
    const before = cloud.codes().length;
    await tab.getByRole("button", { name: "Email me a code" }).click();
    const code = await eventually(() => cloud.codes()[before], "the emailed code on the cloud's stderr");
    await tab.getByLabel("Code from the email").fill("000000");
    await tab.getByRole("button", { name: "Sign in with the code" }).click();
    await expect(tab.getByRole("alert").textContent()).resolves.toContain("that code did not work");
    await tab.getByLabel("Code from the email").fill(code);
    await tab.getByRole("button", { name: "Sign in with the code" }).click();
    await tab.getByRole("heading", { name: /Pair with hub/ }).waitFor();
    await tab.getByRole("button", { name: "Not now" }).click();
    await tab.getByRole("heading", { name: "Pair this browser with your hub" }).waitFor();
    await laptop.close();
  });

  test("the app shell opens offline (service worker), and the page logged no errors", async () => {
    await page.goto(cloud.url + "/");
    await page.evaluate(async () => {
      await navigator.serviceWorker.ready;
    });
    await page.reload();
    await phone.setOffline(true);
    try {
      await page.reload();
      await page.getByRole("link", { name: "Helix Mesh" }).waitFor({ timeout: 10_000 });
    } finally {
      await phone.setOffline(false);
    }
    const unexpected = problems.filter((p) => !/ERR_INTERNET_DISCONNECTED|Failed to fetch|net::ERR|WebSocket/i.test(p));
    expect(unexpected).toEqual([]);
  });
});
