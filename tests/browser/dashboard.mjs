// Drives headless Chromium through the dashboard for tests/it/browser.rs.
// Usage: node dashboard.mjs <base_url> <admin token> <screenshot dir>
// Talks to the Rust test by lines: prints READY, TASK_OPEN, TOOL_SEEN, then OK; reads
// "TASK <id>" from stdin. Exits non-zero with a message on the first failed check.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, token, shots] = process.argv.slice(2);
if (!base || !token || !shots) {
  console.error("usage: node dashboard.mjs <base_url> <admin token> <screenshot dir>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (line) => console.log(line);
const check = (ok, message) => { if (!ok) throw new Error(message); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const alerts = [];
  const cspErrors = [];
  page.on("dialog", (dialog) => {
    if (dialog.type() === "confirm") return dialog.accept();
    alerts.push(dialog.message());
    return dialog.dismiss();
  });
  page.on("console", (message) => {
    if (message.type() === "error") cspErrors.push(message.text());
  });
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

  // Log in: a wrong token first, then the right one.
  await page.goto(`${base}/`);
  check(page.url().endsWith("/login"), `an anonymous visit should land on /login, got ${page.url()}`);
  await page.fill("#token", "not the token");
  await page.click("button[type=submit]");
  await page.waitForSelector(".alert.error");
  await shot("01-login-refused");
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${base}/`), page.click("button[type=submit]")]);
  await page.waitForSelector("table.tasks");
  await shot("02-dashboard-empty");

  // A webhook creates a task: it must appear without a reload.
  await page.evaluate(() => { window.__noReload = true; });
  say("READY");
  const answer = (await lines.next()).value || "";
  const id = answer.replace(/^TASK /, "").trim();
  check(/^\d+$/.test(id), `expected "TASK <id>" on stdin, got ${JSON.stringify(answer)}`);
  const row = `tr[data-task-id="${id}"]`;
  await page.waitForSelector(row, { timeout: 15000 });
  check(await page.evaluate(() => window.__noReload === true), "the page reloaded instead of updating itself");
  const title = await page.textContent(`${row} td.title`);
  await shot("03-dashboard-live");

  // The task page, with the transcript streaming in.
  await Promise.all([page.waitForURL(`${base}/tasks/${id}`), page.click(`${row} td.title a`)]);
  await page.waitForSelector("#transcript[data-stream]");
  check((await page.textContent("h1")).includes(title.trim()), "the task page shows another title");
  say("TASK_OPEN");
  await page.waitForSelector('details[data-tool-id="t1"]', { timeout: 15000 });
  say("TOOL_SEEN");
  await page.waitForFunction(
    () => document.querySelector('details[data-tool-id="t1"] .tool-output pre')?.textContent.includes("3 passed"),
    null, { timeout: 15000 });
  check(await page.evaluate(() => document.querySelectorAll(".late-result").length === 0),
    "the tool result should join its call, not stand alone");
  await page.click('details[data-tool-id="t1"] summary');
  await shot("04-task-transcript");

  // Cancel, confirming the dialog.
  await Promise.all([page.waitForURL(/done=cancelled/), page.click("button.danger")]);
  await page.waitForSelector("text=The task is cancelled.");
  check((await page.textContent("#task-status")).trim() === "cancelled", "the badge should say cancelled");
  await shot("05-task-cancelled");

  await page.goto(`${base}/deliveries`);
  await page.waitForSelector("table");
  await shot("06-deliveries");
  await page.goto(`${base}/setup`);
  await shot("07-setup");
  await page.emulateMedia({ colorScheme: "dark" });
  await page.goto(`${base}/`);
  await page.waitForSelector(row);
  await shot("08-dashboard-dark");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/tasks/${id}`);
  await shot("09-task-phone-dark");
  await page.goto(`${base}/tasks/999999`);
  await shot("10-not-found");

  check(alerts.length === 0, `a script ran from page content: ${alerts.join(", ")}`);
  check(cspErrors.filter((e) => e.includes("Content Security Policy")).length === 0,
    `the CSP blocked something: ${cspErrors.join(" | ")}`);
  say("OK");
} catch (err) {
  console.error(`browser check failed: ${err.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
process.exit(process.exitCode || 0);
