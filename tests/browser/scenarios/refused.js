// The admin API refuses what is not the console: a page of another origin
// (a second HTTP server on another port, started here) cannot read
// /admin/devices even with the token; the console's origin without the
// token gets 401; a name the cloud does not listen on (evil.test mapped to
// 127.0.0.1 in the browser: DNS rebinding) gets 421 for the page and the API.
//   params: token, port (the cloud's)
'use strict';
const http = require('http');

// A one-page server on a free loopback port; resolves to { url, close }.
function foreignServer() {
  const page = '<!doctype html><title>elsewhere</title><p>another origin</p>';
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page);
  });
  return new Promise((resolve, reject) => {
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve({
      url: 'http://127.0.0.1:' + srv.address().port + '/',
      close: () => new Promise((r) => srv.close(r)),
    }));
  });
}

module.exports = async function (page, ctx, step) {
  const { token } = ctx.params;
  const admin = ctx.url.replace(/\/$/, '') + '/admin/devices';
  // what the cloud answered to requests for /admin, seen from the network
  const answers = [];
  const foreign = await foreignServer();
  page.on('response', (res) => {
    if (res.url().startsWith(admin)) answers.push({ method: res.request().method(), status: res.status() });
  });

  try {
    await step('a page of another origin cannot read /admin/devices with the token', async () => {
      await page.goto(foreign.url);
      const got = await page.evaluate(async (a) => {
        try {
          const res = await fetch(a.admin, { headers: { Authorization: 'Bearer ' + a.token } });
          return { status: res.status, body: await res.text() };
        } catch (e) {
          return { error: String(e) };
        }
      }, { admin, token });
      ctx.expect(got.error, 'the fetch from ' + foreign.url + ' succeeded: ' + JSON.stringify(got));
      return { fetch: got.error, answers: answers.slice() };
    });

    await step('the cloud itself refuses a request from that page (403)', async () => {
      answers.length = 0;
      // a simple GET (no preflight): it reaches the cloud, whose answer the
      // page may not read, but the network sees
      const done = page.waitForResponse((res) => res.url().startsWith(admin));
      await page.evaluate((a) => fetch(a, { mode: 'no-cors', credentials: 'include' }).catch(() => null), admin);
      const res = await done;
      ctx.expect(res.status() === 403, 'the cloud answered ' + res.status() + ' to a cross-site GET');
      return { status: res.status(), body: (await res.text().catch(() => '')).slice(0, 200) };
    });
  } finally {
    await foreign.close();
  }

  await step('without the token the console\'s own origin gets 401', async () => {
    await page.goto(ctx.url);
    const got = await page.evaluate(async (a) => {
      const res = await fetch(a);
      return { status: res.status, body: await res.text() };
    }, admin);
    ctx.expect(got.status === 401, '/admin/devices without a token answered ' + got.status + ': ' + got.body);
    return got;
  });

  await step('a host name the cloud does not serve is refused (421)', async () => {
    const browser = await ctx.launch(['--host-resolver-rules=MAP evil.test 127.0.0.1']);
    const evil = await ctx.newPage({}, browser);
    ctx.focus(evil);
    const base = 'http://evil.test:' + ctx.params.port;
    const res = await evil.goto(base + '/');
    ctx.expect(res.status() === 421, 'http://evil.test:' + ctx.params.port + '/ answered ' + res.status());
    ctx.expect(await evil.locator('#login').count() === 0, 'the console page was served to evil.test');
    const api = await evil.evaluate(async (a) => {
      const r = await fetch(a.url, { headers: { Authorization: 'Bearer ' + a.token } });
      return r.status;
    }, { url: base + '/admin/devices', token });
    ctx.expect(api === 421, '/admin/devices through evil.test answered ' + api);
    ctx.focus(page);
    return { page: res.status(), api };
  });
};
