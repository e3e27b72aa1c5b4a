// Opens an HTML page in headless Chromium (Debian's, driven by playwright-core) and prints what
// a reader would meet, as one JSON object: console errors, page errors, dialogs (a script that
// got through), failed requests (the page must need nothing outside itself), the charts drawn,
// and the sizes of a full-page screenshot of it and of a blank page of the same width.
//
//   node adapters/cli/tests/browser.mjs PAGE.html SHOT.png
import { chromium } from "playwright-core";
import { statSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [page_path, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // no sandbox as root; no calls home (this machine's network is closed)
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: 30_000,
});
const found = { console_errors: [], page_errors: [], dialogs: [], requests_failed: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  page.on("console", (m) => m.type() === "error" && found.console_errors.push(m.text()));
  page.on("pageerror", (e) => found.page_errors.push(String(e)));
  page.on("dialog", (d) => {
    found.dialogs.push(d.message());
    d.dismiss();
  });
  page.on("requestfailed", (r) => found.requests_failed.push(r.url()));
  await page.goto(pathToFileURL(page_path).href, { waitUntil: "load", timeout: 30_000 });
  found.title = await page.title();
  // each chart: drawn (a size on the page) and holding its lines
  found.charts = await page.$$eval("svg", (svgs) =>
    svgs.map((s) => {
      const box = s.getBoundingClientRect();
      return { width: Math.round(box.width), height: Math.round(box.height), lines: s.querySelectorAll("polyline").length };
    }),
  );
  found.scripts = await page.$$eval("script", (s) => s.length);
  await page.screenshot({ path: shot, fullPage: true });
  found.screenshot_bytes = statSync(shot).size;
  await page.goto("about:blank");
  await page.screenshot({ path: `${shot}.blank.png`, fullPage: true });
  found.blank_bytes = statSync(`${shot}.blank.png`).size;
} finally {
  await browser.close();
}
console.log(JSON.stringify(found));
