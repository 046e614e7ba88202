// Drives headless Chromium through the refused deliveries and the test delivery button
// for tests/it/browser.rs.
// Usage: node deliveries.mjs <base_url> <admin token> <screenshot dir>
// The Rust test has sent a delivery with a wrong signature to the forge `github` first.
// Prints OK at the end; exits non-zero with a message on the first failed check.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, token, shots] = process.argv.slice(2);
if (!base || !token || !shots) {
  console.error("usage: node deliveries.mjs <base_url> <admin token> <screenshot dir>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const check = (ok, message) => { if (!ok) throw new Error(message); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const failed = [];
  page.on("response", (response) => { if (response.status() === 404) failed.push(response.url()); });
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

  await page.goto(`${base}/login`);
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);

  // The refused delivery is listed, with its status and reason, and nothing secret.
  await page.goto(`${base}/deliveries`);
  const refused = "#refused tbody tr";
  await page.waitForSelector(refused);
  const row = await page.textContent(refused);
  check(row.includes("github") && row.includes("401"), `the refused row lacks forge or status: ${row}`);
  check(row.includes("matches none of the webhook secrets"), `the refused row lacks the reason: ${row}`);
  check(row.includes("127.0.0.1"), `the refused row lacks the source address: ${row}`);
  await shot("20-deliveries-refused");

  // The setup page says the last delivery for the forge was refused, and why.
  await page.goto(`${base}/setup`);
  const last = await page.textContent("#last-delivery-github");
  check(last.includes("The last delivery for github was refused") && last.includes("matches none"),
    `the setup page does not say the last delivery was refused: ${last}`);
  await shot("21-setup-refused");

  // The button sends a signed test delivery to the forge's own endpoint.
  await Promise.all([page.waitForURL(`${base}/setup/test-delivery`), page.click("#send-test-github")]);
  const outcome = await page.textContent("#test-delivery-github");
  check(outcome.includes("/webhooks/github answered 200: ignored"), `unexpected test outcome: ${outcome}`);
  await shot("22-setup-test-delivery");
  await page.goto(`${base}/setup`);
  const now = await page.textContent("#last-delivery-github");
  check(now.includes("was accepted"), `after the test delivery the last one was accepted: ${now}`);

  await page.goto(`${base}/deliveries`);
  const accepted = await page.textContent("#deliveries tbody");
  check(accepted.includes("forgehand/test-delivery") && accepted.includes("ignored"),
    `the test delivery is not listed: ${accepted}`);
  await shot("23-deliveries-after-test");
  check(!failed.some((url) => url.endsWith("/favicon.ico")), "favicon.ico answered 404");
  console.log("OK");
} catch (err) {
  console.error(`browser check failed: ${err.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
process.exit(process.exitCode || 0);
