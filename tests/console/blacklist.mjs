// Signs in to the console, waits for a flag of STREAM_ID to appear in the live queue,
// replays its archived context (hls.js), then clicks "blacklist host" on it.
// Prints one JSON line; exits non-zero on failure.
import { chromium } from "playwright-core";

const [base, token, streamId, reason] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // The local S3 server's certificate comes from a test CA the browser does not know.
  args: ["--no-sandbox", "--disable-gpu", "--ignore-certificate-errors"],
});
try {
  const context = await browser.newContext();  // one cookie jar for both pages
  const page = await context.newPage();
  await page.goto(`${base}/console/login`);
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${base}/console`), page.click("#sign-in")]);
  const signedIn = Date.now();
  const row = page.locator(`.flag[data-stream-id="${streamId}"]`).first();
  await row.waitFor({ timeout: 30000 });
  const flagSeenMs = Date.now() - signedIn;
  const flagId = await row.getAttribute("data-flag-id");
  // Newer flags are prepended as they arrive: pin this one by its id from here on.
  const flag = page.locator(`.flag[data-flag-id="${flagId}"]`);
  const replay = await flag.locator("a").first().getAttribute("href");
  const player = await context.newPage();
  await player.goto(`${base}${replay}`);
  await player.waitForFunction(
    () => document.getElementById("video").readyState >= 2, null, { timeout: 40000 });
  const replayed = await player.evaluate(() => document.getElementById("video").duration);
  await player.close();
  await flag.locator("input.reason").fill(reason);
  await flag.locator("button.blacklist_host").click();
  await flag.locator(".result", { hasText: "blacklist_host done" }).waitFor({ timeout: 15000 });
  console.log(JSON.stringify({ ok: true, flag_id: flagId, flag_seen_ms: flagSeenMs, replay,
    replayed_s: replayed }));
} finally {
  await browser.close();
}
