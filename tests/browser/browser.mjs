// Shared: Debian's Chromium, headless, as root, with no background networking.
import { chromium } from "playwright-core";

export async function openDashboard(url, token) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(url + "/dashboard");
  await page.fill("#token", token);
  await page.click("#login-button");
  await page.waitForSelector("#app:not([hidden])");
  return { browser, page };
}
