// Drives the dashboard like an operator: enters the token, replays a dead letter and sees it
// delivered, resets an open circuit and sees it closed, discards the dead event blocking a key
// of an ordered destination and sees the key free.
//   node dashboard.mjs URL TOKEN DEAD_EVENT_ID SOURCE-DESTINATION BLOCKED_KEY [SCREENSHOT.png]
import { openDashboard } from "./browser.mjs";

const [url, token, eventId, circuit, blockedKey, shot] = process.argv.slice(2);
const { browser, page } = await openDashboard(url, token);
try {
  const replay = `[data-testid="replay-${eventId}"]`;
  await page.waitForSelector(replay, { timeout: 20000 });
  await page.click(replay);
  await page.waitForFunction(
    (id) => [...document.querySelectorAll(`[data-testid="status-${id}"]`)].some((e) => e.textContent === "delivered")
      && !document.querySelector(`[data-testid="replay-${id}"]`),
    eventId, { timeout: 30000 });
  console.log(`dashboard: dead letter ${eventId} replayed and delivered`);

  await page.waitForSelector(`[data-testid="circuit-${circuit}"].state-open`, { timeout: 20000 });
  await page.click(`[data-testid="reset-${circuit}"]`);
  await page.waitForFunction(
    (c) => document.querySelector(`[data-testid="circuit-${c}"]`)?.textContent === "closed", circuit, { timeout: 20000 });
  console.log(`dashboard: circuit ${circuit} reset and closed`);

  await page.waitForSelector(`[data-testid="discard-${blockedKey}"]`, { timeout: 20000 });
  page.once("dialog", (dialog) => dialog.accept());
  await page.click(`[data-testid="discard-${blockedKey}"]`);
  await page.waitForFunction(() => document.querySelector('[data-testid="blocked"]').hidden, null, { timeout: 20000 });
  console.log(`dashboard: blocked key ${blockedKey} discarded and free`);

  // The event view: found by its id, with its attempts on a timeline and its payload.
  // Its first attempt (dead) and the replay's: searched again until the trail has both.
  await page.fill('[data-testid="find"]', eventId);
  let attempts = 0;
  for (const deadline = Date.now() + 20000; attempts < 2; ) {
    if (Date.now() > deadline) throw new Error(`the timeline shows ${attempts} attempts`);
    await page.click('[data-testid="find-button"]');
    await page.waitForSelector('[data-testid="timeline"]', { timeout: 20000 });
    attempts = await page.$$eval('[data-testid="timeline"] tr[data-testid="attempt"]', (rows) => rows.length);
    if (attempts < 2) await page.waitForTimeout(300);
  }
  const payload = await page.textContent('[data-testid="payload"]');
  if (!payload.includes("eventId")) throw new Error(`the payload is not shown: ${payload}`);
  console.log(`dashboard: event ${eventId} shown with ${attempts} attempts on its timeline`);
  await page.waitForSelector('[data-testid="replicas"] tr[data-testid^="replica-"]', { timeout: 20000 });
  console.log("dashboard: replicas listed");
  if (shot) await page.screenshot({ path: shot, fullPage: true });
} finally {
  await browser.close();
}
