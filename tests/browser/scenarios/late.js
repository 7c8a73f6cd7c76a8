// A status the device sends while the console is logging in shows in its
// row: the page's first read of /admin/firmwares is held until the device
// (its REST API, with its key) has sent a new fota_status, after the
// devices were read; the row must still end on it.
//   params: token, device, key, timeout (s)
'use strict';
const { row, login, until } = require('../console');

module.exports = async function (page, ctx, step) {
  const { token, device, key } = ctx.params;
  const timeout = Number(ctx.params.timeout || 60) * 1000;
  const value = 'standby-' + Date.now();
  let sent = null;
  await page.route((u) => u.pathname === '/admin/firmwares', async (route) => {
    if (!sent) {
      sent = fetch(ctx.url.replace(/\/$/, '') + '/mcs/v2/devices/' + encodeURIComponent(device) + '/datapoints', {
        method: 'POST', headers: { deviceKey: key, 'Content-Type': 'application/json' },
        body: JSON.stringify({ datapoints: [{ dataChnId: 'fota_status', values: { value } }] }),
      }).then((r) => r.status);
      await sent;
    }
    return route.continue();
  });

  await step('log in while the device sends a status', async () => {
    await login(page, ctx.url, token);
    ctx.expect(sent && await sent === 200, 'the device\'s status was not taken: ' + (sent && await sent));
  });

  await step('the row shows that status', async () => {
    const cell = page.locator('#devices ' + row(device) + ' td.status');
    await until(page, 'the status ' + value + ' in the row', (a) => {
      const c = document.querySelector('#devices tr[data-device="' + CSS.escape(a.device) + '"] td.status');
      return c && c.textContent.trim() === a.value;
    }, { device, value }, timeout);
    await page.unrouteAll({ behavior: 'ignoreErrors' });
    return (await cell.textContent()).trim();
  });
};
