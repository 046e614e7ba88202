// Runs the setup wizard in headless Chromium for tests/it/browser.rs.
// Usage: node wizard.mjs <base_url> <admin token> <screenshot dir> <forge API URL> <forge token> <agent path>
// Prints "SECRET <generated webhook secret>" once it is shown, then OK. Exits non-zero
// with a message on the first failed check.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, token, shots, apiUrl, forgeToken, agent] = process.argv.slice(2);
if (!agent) {
  console.error("usage: node wizard.mjs <base_url> <admin token> <screenshot dir> <api url> <forge token> <agent>");
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
  // Refused steps answer 400 on purpose: only script errors and CSP blocks count.
  const consoleErrors = [];
  page.on("pageerror", (error) => consoleErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error" && message.text().includes("Content Security Policy")) consoleErrors.push(message.text());
  });
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  const next = async (url) => Promise.all([page.waitForURL(url), page.click("main form button[type=submit]:not([value=generate])")]);

  await page.goto(`${base}/login`);
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);

  // A new user: no forge yet, the setup page offers the wizard.
  await page.goto(`${base}/setup`);
  await shot("11-setup-empty");
  await Promise.all([page.waitForURL(`${base}/setup/wizard/forge`), page.click("#add-forge")]);

  // 1. Forge.
  await page.fill("#public_url", "http://forgehand.test");
  await page.fill("#name", "Gitea Home");
  await page.check("input[name=kind][value=gitea]");
  await page.fill("#api_url", apiUrl);
  await page.click("main form button[type=submit]");
  await page.waitForSelector("#problems");
  check((await page.textContent("#problems")).includes("a-z, 0-9"), "a bad name should be explained");
  await shot("12-wizard-forge-error");
  await page.fill("#name", "home");
  await next(`${base}/setup/wizard/token`);

  // 2. Token: a wrong one first.
  await page.fill("#token", "not-the-token");
  await page.fill("#repo", "acme/widgets");
  await page.click("main form button[type=submit]");
  await page.waitForSelector("#problems");
  check((await page.textContent("#problems")).includes("The token does not work"), "a refused token should say so");
  check((await page.inputValue("#token")) === "", "the token must not be echoed back");
  await shot("13-wizard-token-refused");
  await page.fill("#token", forgeToken);
  await next(`${base}/setup/wizard/webhook`);

  // 3. Webhook: instructions, and a secret shown once.
  check((await page.textContent("#payload-url")).trim() === "http://forgehand.test/webhooks/home", "payload URL");
  check((await page.textContent("#token-report")).includes("permission on acme/widgets"), "the token report");
  await Promise.all([page.waitForSelector("#new-secret"), page.click("#generate")]);
  const secret = (await page.textContent("#new-secret")).trim();
  check(/^[0-9a-f]{64}$/.test(secret), `the secret looks wrong: ${secret}`);
  console.log(`SECRET ${secret}`);
  await shot("14-wizard-webhook");
  await page.reload();
  check((await page.$("#new-secret")) === null, "the secret must be shown once only");
  await next(`${base}/setup/wizard/trigger`);

  // 4. Trigger, 5. Agent.
  await page.fill("#label", "robot");
  await page.fill("#command", "/robot");
  await next(`${base}/setup/wizard/agent`);
  await page.fill("#agent_command", agent);
  await page.fill("#max_concurrent", "3");
  await page.fill("#timeout_secs", "900");
  await shot("15-wizard-agent");
  await next(`${base}/setup/wizard/review`);

  // 6. Review: masked, then save.
  const preview = await page.textContent("#preview");
  check(preview.includes('name = "home"') && !preview.includes(secret) && !preview.includes(forgeToken),
    "the preview should show the forge with its secrets masked");
  check((await page.textContent("#agent-report")).includes("2.1.0-fake"), "the agent's version");
  await shot("16-wizard-review");
  await Promise.all([page.waitForSelector("#saved"), page.click("#save")]);
  await shot("17-wizard-saved");
  await page.goto(`${base}/setup`);
  check((await page.textContent("main")).includes("http://forgehand.test/webhooks/home"), "setup shows the new forge");
  await page.emulateMedia({ colorScheme: "dark" });
  await page.setViewportSize({ width: 390, height: 844 });
  await shot("18-setup-phone-dark");

  check(consoleErrors.length === 0, `console errors: ${consoleErrors.join(" | ")}`);
  console.log("OK");
} catch (err) {
  console.error(`browser check failed: ${err.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
process.exit(process.exitCode || 0);
