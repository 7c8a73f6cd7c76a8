// The cloud failing for a moment keeps the user logged in: the page
// reloaded while /admin answers 503, then 500, then not at all (the
// network) shows a notice, never the login form, keeps the token, and
// shows the devices once the cloud answers again.
//   params: token, device
'use strict';
const { row, login, until } = require('../console');

const FAILURES = [
  { status: 503, message: 'the cloud is restarting' },
  { status: 500, message: 'the cloud tripped' },
  { network: true },
];

module.exports = async function (page, ctx, step) {
  const { token, device } = ctx.params;

  await step('log in', async () => {
    await login(page, ctx.url, token);
    await page.locator('#devices ' + row(device)).waitFor();
  });

  // each of the reloaded page's first requests (the ring's seq, which a
  // login asks for first and again at each retry) fails in turn as
  // FAILURES says, then they pass. Only that request: the page before the
  // reload may still ask for the devices (a heartbeat's event) or poll,
  // and a failure spent on it would never show on the reloaded page.
  const failed = [];
  let release;
  const released = new Promise((ok) => { release = ok; });
  const loginFirst = (u) => u.pathname === '/admin/events' && u.searchParams.get('since') === '0' &&
    u.searchParams.get('wait') === '0';
  await page.route(loginFirst, async (route) => {
    const f = FAILURES[failed.length];
    if (!f) return route.continue();
    failed.push(f.network ? 'network' : f.status);
    if (failed.length === FAILURES.length) await released;
    if (f.network) return route.abort('connectionfailed');
    return route.fulfill({ status: f.status, contentType: 'application/json',
      body: JSON.stringify({ message: f.message }) });
  });

  await step('reloaded while the cloud answers 503: a notice says so, the login form stays away', async () => {
    await page.reload();
    const shown = await until(page, 'a notice naming the 503', () => {
      const n = document.querySelector('#notice');
      const form = document.querySelector('#login');
      if (form && form.checkVisibility()) return 'login form: ' + document.querySelector('#login-error').textContent;
      return n && n.checkVisibility() && n.textContent.includes('restarting') && n.textContent;
    });
    ctx.expect(shown.includes('restarting'), 'the login form showed instead of a notice (' + shown + ')');
    return shown;
  });

  await step('a 500 and a network failure next: still a notice, still logged in', async () => {
    const shown = await until(page, 'a notice naming the 500', () => {
      const n = document.querySelector('#notice');
      const form = document.querySelector('#login');
      if (form && form.checkVisibility()) return 'login form: ' + document.querySelector('#login-error').textContent;
      return n && n.checkVisibility() && n.textContent.includes('tripped') && n.textContent;
    });
    ctx.expect(shown.includes('tripped'), 'the login form showed instead of a notice (' + shown + ')');
    release();
    const stored = await page.evaluate(() => Object.keys(sessionStorage).length);
    ctx.expect(stored > 0, 'the token left sessionStorage');
    return { shown, failed };
  });

  await step('once the cloud answers, the devices show, no login asked', async () => {
    const got = await until(page, 'the device row again', (id) => {
      const form = document.querySelector('#login');
      if (form && form.checkVisibility()) return 'login form';
      const tr = document.querySelector('#devices tr[data-device="' + CSS.escape(id) + '"]');
      return tr && tr.checkVisibility() && 'devices';
    }, device);
    ctx.expect(got === 'devices', 'the console asked for the token again');
    ctx.expect(JSON.stringify(failed) === JSON.stringify([503, 500, 'network']), 'failures: ' + JSON.stringify(failed));
    await page.unrouteAll({ behavior: "ignoreErrors" });
    return failed;
  });
};
