// The page of examples/web_terminal in a real browser: headless Chromium
// (the system's, through puppeteer-core) opens the page, types a command
// into xterm.js, reads the answer from the terminal's buffer, checks that a
// window resize reaches `stty size`, saves a screenshot, and sees the
// session close with the shell's exit status.
//
//   node web_terminal.mjs /path/to/web_terminal /path/to/screenshot.png
//
// Exit 0: passed; 1: failed; 77: skipped (no Chromium, no puppeteer-core).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const [server_binary, screenshot] = process.argv.slice(2);
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";
const SKIP = 77;

if (!existsSync(chromium)) {
  console.log(`SKIP web_terminal_browser_test: ${chromium} not found (scripts/bootstrap installs Debian's chromium)`);
  process.exit(SKIP);
}
let puppeteer;
try {
  puppeteer = (await import("puppeteer-core")).default;
} catch (e) {
  console.log(`SKIP web_terminal_browser_test: puppeteer-core not installed in the build tree (npm ci failed?): ${e.message}`);
  process.exit(SKIP);
}

const token = "browser-test-token";
const server = spawn(server_binary, ["--listen", "127.0.0.1:0", "--token", token, "--", "env", "PS1=$ ", "ENV=", "/bin/sh"],
                     { stdio: ["ignore", "pipe", "inherit"] });
const profile = mkdtempSync(join(tmpdir(), "web_terminal_chromium-"));
let browser = null;

// Every path ends here: the browser closed, the server stopped and reaped.
async function finish(code) {
  if (browser) await browser.close().catch(() => {});
  if (server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10000))]);
    if (server.exitCode === null && server.signalCode === null) server.kill("SIGKILL");
  }
  rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}
const watchdog = setTimeout(() => { console.error("FAIL: timed out"); finish(1); }, 150000);

function check(condition, what) {
  if (!condition) throw new Error(what);
  console.log(`ok: ${what}`);
}

try {
  const url = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: server.stdout });
    lines.once("line", (line) => resolve(line.replace(/^web_terminal: /, "")));
    server.once("exit", (code) => reject(new Error(`web_terminal exited with ${code}`)));
  });
  console.log(`server: ${url}`);

  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    userDataDir: profile,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 900, height: 500 });
  await page.goto(url, { waitUntil: "load" });
  check(await page.evaluate(() => typeof Terminal !== "undefined"), "the page loaded xterm.js");
  await page.waitForFunction(() => window.webTerminal && window.webTerminal.ws.readyState === WebSocket.OPEN,
                             { timeout: 30000 });
  check(true, "the page connected its WebSocket");

  // Lines of the terminal's active buffer, as xterm.js renders them.
  const screen_lines = () => page.evaluate(() => {
    const b = window.webTerminal.term.buffer.active;
    const lines = [];
    for (let i = 0; i < b.length; ++i) lines.push(b.getLine(i).translateToString(true));
    return lines;
  });
  const wait_for_line = async (pattern) => {
    await page.waitForFunction((source) => {
      const re = new RegExp(source);
      const b = window.webTerminal.term.buffer.active;
      for (let i = 0; i < b.length; ++i) if (re.test(b.getLine(i).translateToString(true))) return true;
      return false;
    }, { timeout: 30000 }, pattern.source);
  };

  await page.focus(".xterm-helper-textarea");
  await page.keyboard.type("echo $((6*7))");
  await page.keyboard.press("Enter");
  await wait_for_line(/^42$/);
  check((await screen_lines()).includes("42"), "typed `echo $((6*7))`, the terminal shows 42");

  // A bigger window: the fit addon resizes the terminal, the page sends the
  // resize message, the pty follows.
  // The size before the resize is read first: read after it, it may already
  // be the new one, and the wait below would wait for a second change.
  const before = await page.evaluate(() => [window.webTerminal.term.rows, window.webTerminal.term.cols]);
  await page.setViewport({ width: 1200, height: 700 });
  await page.waitForFunction((r, c) => {
    const t = window.webTerminal.term;
    return t.rows !== r || t.cols !== c;
  }, { timeout: 30000 }, ...before);
  // The fit addon may settle in more than one step on a loaded machine:
  // wait until the size holds still before asking the pty for it.
  const size = () => page.evaluate(() => [window.webTerminal.term.rows, window.webTerminal.term.cols]);
  let [rows, cols] = await size();
  for (let settled = 0; settled < 3;) {
    await new Promise((done) => setTimeout(done, 200));
    const [r, c] = await size();
    settled = r === rows && c === cols ? settled + 1 : 0;
    [rows, cols] = [r, c];
  }
  await page.keyboard.type("stty size");
  await page.keyboard.press("Enter");
  await wait_for_line(new RegExp(`^${rows} ${cols}$`));
  check(true, `resized the window, \`stty size\` shows ${rows} ${cols}`);

  await page.screenshot({ path: screenshot });
  console.log(`screenshot: ${screenshot}`);

  await page.keyboard.type("exit 5");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("closed"),
                             { timeout: 30000 });
  const status = await page.$eval("#status", (e) => e.textContent);
  check(status === "closed: 1000 exit 5", `the session closed with the exit status (${status})`);
  clearTimeout(watchdog);
  await finish(0);
} catch (e) {
  console.error(`FAIL: ${e.stack || e}`);
  clearTimeout(watchdog);
  await finish(1);
}
