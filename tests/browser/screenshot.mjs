// Writes a PNG of the dashboard once its tables have data.
//   node screenshot.mjs URL TOKEN OUT.png
import { openDashboard } from "./browser.mjs";

const [url, token, out] = process.argv.slice(2);
const { browser, page } = await openDashboard(url, token);
try {
  await page.waitForFunction(() => document.querySelectorAll("#recent tr[data-event]").length > 0, null, { timeout: 20000 });
  // Two more refreshes, so the sparklines have points.
  await page.waitForTimeout(4500);
  // The event view of the first dead letter (else the latest event): its attempts timeline.
  const show = (await page.$("#failures a[data-show]")) || (await page.$("#recent a[data-show]"));
  await show.click();
  await page.waitForSelector('[data-testid="timeline"] tr', { timeout: 20000 });
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
