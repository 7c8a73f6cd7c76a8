#!/usr/bin/env node
// Runs one browser scenario (tests/browser/scenarios/NAME.js) against a URL
// in Debian's chromium, headless, through playwright-core (installed into
// build/browser by `make browser-deps`; it never downloads a browser).
//
//   node tests/browser/run.js SCENARIO URL [KEY=VALUE ...] [--shots DIR] [--watch-stdin]
//
// KEY=VALUE pairs (and the JSON object in $BROWSER_PARAMS, which they
// override) are the scenario's params. A scenario exports
// `async function (page, ctx, step)`; each step(name, fn) prints one JSON
// line when it ends, {"step": name, "ok": true|false, "ms": n, ...}, and a
// failed step ends the scenario (the later steps build on it), after a
// screenshot into the --shots directory. ctx.signal(name) prints
// {"signal": name} for the program driving this one (the spec starts the
// app when the page says it is open). The last line is
// {"done": true, "ok": bool, "steps": n, "failed": n, "ms": n}; the exit
// status is 0 only when every step held, 2 for a usage error and 3 when
// chromium or playwright-core is missing.
//
// --watch-stdin: end (browser closed, status 1) when stdin reaches its end,
// so a spec that dies takes its browser with it.
//
// Environment: CHROMIUM (default /usr/bin/chromium), BROWSER_NODE_MODULES
// (default build/browser/node_modules of this checkout).
'use strict';

const fs = require('fs');
const path = require('path');

const USAGE = 'usage: node tests/browser/run.js SCENARIO URL [KEY=VALUE ...] [--shots DIR] [--watch-stdin]';
const TOP = path.resolve(__dirname, '..', '..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const MODULES = process.env.BROWSER_NODE_MODULES || path.join(TOP, 'build', 'browser', 'node_modules');
const STEP_TIMEOUT = 30000; // a step's default wait for an event, ms

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// Ends with a message on stderr and a last JSON line the spec can show.
function die(status, message) {
  process.stderr.write('run.js: ' + message + '\n');
  emit({ done: true, ok: false, error: message });
  process.exit(status);
}

function parseArgs(argv) {
  const o = { params: {}, shots: null, watchStdin: false, positional: [] };
  if (process.env.BROWSER_PARAMS) {
    try {
      Object.assign(o.params, JSON.parse(process.env.BROWSER_PARAMS));
    } catch (e) {
      die(2, 'BROWSER_PARAMS is not a JSON object: ' + e.message);
    }
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--shots') o.shots = argv[++i];
    else if (a === '--watch-stdin') o.watchStdin = true;
    else if (a.startsWith('--')) die(2, "unknown option '" + a + "'\n" + USAGE);
    else if (o.positional.length >= 2 && a.includes('=')) {
      const eq = a.indexOf('=');
      o.params[a.slice(0, eq)] = a.slice(eq + 1);
    } else o.positional.push(a);
  }
  if (o.positional.length !== 2) die(2, USAGE);
  if (o.shots === undefined) die(2, '--shots needs a directory');
  return o;
}

// The scenario file: a name in tests/browser/scenarios, or a path.
function loadScenario(name) {
  const file = name.includes('/') ? path.resolve(name) : path.join(__dirname, 'scenarios', name + '.js');
  if (!fs.existsSync(file)) die(2, 'no scenario ' + file);
  const fn = require(file);
  if (typeof fn !== 'function') die(2, file + ' does not export a function (page, ctx, step)');
  return { fn, name: path.basename(file, '.js') };
}

// Missing tools are said with how to get them, never skipped.
function loadPlaywright() {
  if (!fs.existsSync(CHROMIUM)) {
    die(3, 'chromium is missing (' + CHROMIUM + '): sh .ci/install-deps, or apt-get install chromium fonts-dejavu-core');
  }
  try {
    return require(path.join(MODULES, 'playwright-core'));
  } catch (e) {
    die(3, 'playwright-core is not in ' + MODULES + ' (' + e.code + '): run make browser-deps');
  }
  return null;
}

class StepFailed extends Error {}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const [scenarioName, url] = opts.positional;
  const scenario = loadScenario(scenarioName);
  const { chromium } = loadPlaywright();
  const t0 = Date.now();
  const browsers = [];

  // A browser of the scenario's own; extra chromium switches in `args`.
  async function launch(args) {
    const b = await chromium.launch({
      executablePath: CHROMIUM, headless: true, timeout: 60000,
      args: ['--disable-dev-shm-usage'].concat(args || []),
    });
    browsers.push(b);
    return b;
  }

  // Every page's console errors and uncaught exceptions, for the steps to
  // assert on and for a failure's report.
  const consoleErrors = [];
  function watch(page) {
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push({ url: page.url(), text: m.text() });
    });
    page.on('pageerror', (e) => consoleErrors.push({ url: page.url(), text: 'uncaught: ' + e.message }));
    page.setDefaultTimeout(STEP_TIMEOUT);
    return page;
  }

  // A new page in a context of its own (viewport 1280x800 at 1 device pixel
  // a CSS pixel unless `options` say otherwise).
  async function newPage(options, browser) {
    const context = await (browser || browsers[0]).newContext(Object.assign(
      { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 }, options || {}));
    return watch(await context.newPage());
  }

  if (opts.watchStdin) {
    process.stdin.on('data', () => {});
    process.stdin.on('end', async () => {
      process.stderr.write('run.js: stdin closed: stopping\n');
      await Promise.allSettled(browsers.map((b) => b.close()));
      process.exit(1);
    });
  }

  await launch();
  const page = await newPage();
  let steps = 0;
  let failed = 0;
  let current = page; // the page a failure's screenshot shows

  const ctx = {
    url, params: opts.params, consoleErrors, launch, newPage,
    shots: opts.shots,
    signal(name, extra) { emit(Object.assign({ signal: name }, extra || {})); },
    // Says which page a failure's screenshot should show.
    focus(p) { current = p; },
    // Raises with `message` unless `cond` holds.
    expect(cond, message) { if (!cond) throw new Error(message); },
  };

  async function step(name, fn) {
    const s0 = Date.now();
    steps++;
    try {
      const detail = await fn();
      const line = { step: name, ok: true, ms: Date.now() - s0 };
      if (detail !== undefined) line.detail = detail;
      emit(line);
      return detail;
    } catch (e) {
      failed++;
      // (playwright's call logs are coloured for a terminal: not in JSON)
      const text = String(e && e.message || e).replace(/\u001b\[[0-9;]*m/g, '');
      const line = { step: name, ok: false, ms: Date.now() - s0, error: text };
      if (opts.shots) {
        const file = path.join(opts.shots, scenario.name + '-' + steps + '.png');
        try {
          fs.mkdirSync(opts.shots, { recursive: true });
          await current.screenshot({ path: file, fullPage: true, timeout: 5000 });
          line.screenshot = file;
        } catch (se) {
          line.screenshot_error = String(se.message || se);
        }
      }
      if (consoleErrors.length) line.console_errors = consoleErrors.slice(-5);
      emit(line);
      throw new StepFailed(name);
    }
  }

  let error = null;
  try {
    await scenario.fn(page, ctx, step);
  } catch (e) {
    if (!(e instanceof StepFailed)) {
      failed++;
      error = 'the scenario raised outside a step: ' + (e && e.stack || e);
    }
  }
  await Promise.allSettled(browsers.map((b) => b.close()));
  const last = { done: true, ok: failed === 0, steps, failed, ms: Date.now() - t0 };
  if (error) last.error = error;
  emit(last);
  return failed === 0 ? 0 : 1;
}

main().then((status) => process.exit(status), (e) => die(1, String(e && e.stack || e)));
