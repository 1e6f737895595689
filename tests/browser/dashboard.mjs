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
  if (shot) await page.screenshot({ path: shot, fullPage: true });
} finally {
  await browser.close();
}
