// Connects GitHub as a GitHub App in the setup wizard, in headless Chromium, for
// tests/it/browser.rs.
// Usage: node wizard-app.mjs <base_url> <admin token> <screenshot dir> <forge API URL> <App id> <.pem path>
// Prints OK. Exits non-zero with a message on the first failed check.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, token, shots, apiUrl, appId, pemPath] = process.argv.slice(2);
if (!pemPath) {
  console.error("usage: node wizard-app.mjs <base_url> <admin token> <screenshot dir> <api url> <app id> <pem path>");
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
  const consoleErrors = [];
  page.on("pageerror", (error) => consoleErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error" && message.text().includes("Content Security Policy")) consoleErrors.push(message.text());
  });
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

  await page.goto(`${base}/login`);
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);
  await page.goto(`${base}/setup/wizard`);
  await page.waitForURL(`${base}/setup/wizard/forge`);
  await page.fill("#public_url", "http://forgehand.test");
  await page.fill("#name", "ghapp");
  await page.check("input[name=kind][value=github]");
  await page.fill("#api_url", apiUrl);
  await Promise.all([page.waitForURL(`${base}/setup/wizard/token`), page.click("main form button[type=submit]")]);

  // The App's needs are listed; a wrong id is refused, and the key is not echoed back.
  const needs = await page.textContent("#app-permissions");
  check(needs.includes("Contents: read & write") && needs.includes("Pull requests: read & write"), `permissions: ${needs}`);
  check(needs.includes("http://forgehand.test/webhooks/ghapp") && needs.includes("Issue comment"), `events: ${needs}`);
  await page.check("#auth-app");
  await page.fill("#app_id", String(Number(appId) + 1));
  await page.fill("#private_key", pemPath);
  await page.fill("#repo", "octo-org/one");
  await page.click("main form button[type=submit]");
  await page.waitForSelector("#problems");
  check((await page.textContent("#problems")).includes("did not accept the App's JWT"), "a wrong App id should say so");
  check((await page.inputValue("#private_key")) === "", "the key must not be echoed back");
  check(await page.isChecked("#auth-app"), "the App stays chosen");
  check((await page.inputValue("#app_id")) === String(Number(appId) + 1), "the typed App id stays, to be corrected");
  await shot("19-wizard-app-refused");
  await page.fill("#app_id", appId);
  await page.fill("#private_key", pemPath);
  await Promise.all([page.waitForURL(`${base}/setup/wizard/webhook`), page.click("main form button[type=submit]")]);
  const report = await page.textContent("#token-report");
  check(report.includes("JWT works: the App is forgehand-app[bot]") && report.includes("contents: write"), `report: ${report}`);
  check((await page.textContent("main")).includes("Subscribe to events"), "the App's webhook is set on the App's page");
  await shot("20-wizard-app-checked");

  check(consoleErrors.length === 0, `console errors: ${consoleErrors.join(" | ")}`);
  console.log("OK");
} catch (err) {
  console.error(`browser check failed: ${err.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
process.exit(process.exitCode || 0);
