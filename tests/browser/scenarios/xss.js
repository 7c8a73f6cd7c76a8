// Values a device sends are hostile: statuses and data points holding
// markup, sent by the spec through the device REST API (with the device's
// key) once the page is open, must show as the literal text, run nothing,
// and trip no CSP or Trusted Types error.
//   params: token, device, payloads (a list of strings: the spec sends each
//   as a fota_status, and payload i also on the channel xss<i>)
'use strict';
const { row, login, until } = require('../console');

module.exports = async function (page, ctx, step) {
  const { token, device, payloads } = ctx.params;
  const r = page.locator('#devices ' + row(device));

  await step('log in', async () => {
    await login(page, ctx.url, token);
    await r.waitFor();
  });

  ctx.signal('page open');

  await step('each payload shows as literal text in the activity feed', async () => {
    await until(page, 'every payload in ol#activity', (list) => {
      const texts = [...document.querySelectorAll('ol#activity > li')].map((li) => li.textContent);
      return list.every((p) => texts.some((t) => t.includes(p)));
    }, payloads);
  });

  await step('the status cell shows the last payload as text', async () => {
    const last = payloads[payloads.length - 1];
    await until(page, 'td.status to read the last payload', (a) => {
      const c = document.querySelector('#devices tr[data-device="' + CSS.escape(a.id) + '"] td.status');
      return c && c.textContent.trim() === a.last;
    }, { id: device, last });
    // nothing but text inside: no element was made from it
    const kids = await r.locator('td.status *').count();
    ctx.expect(kids === 0, 'td.status holds ' + kids + ' element(s)');
  });

  await step('the device page shows them as text in the history and the data points', async () => {
    await page.goto(ctx.url + '#device/' + encodeURIComponent(device));
    await page.locator('#device-page').waitFor({ state: 'visible' });
    await until(page, 'every payload in ol#history and table#points', (a) => {
      const hist = [...document.querySelectorAll('ol#history > li')].map((li) => li.textContent);
      const pts = [...document.querySelectorAll('table#points td')].map((td) => td.textContent);
      return a.payloads.every((p) => hist.some((t) => t.endsWith(p)) && pts.some((t) => t === p));
    }, { payloads });
  });

  await step('no script ran, no element was injected', async () => {
    const found = await page.evaluate(() => ({
      xss: typeof window.__xss,
      scripts: [...document.scripts].filter((s) => s.textContent.includes('__xss')).length,
      imgs: [...document.querySelectorAll('img')].filter((i) => i.getAttribute('src') === 'x').length,
      onerror: document.querySelectorAll('[onerror]').length,
    }));
    ctx.expect(found.xss === 'undefined', 'window.__xss is ' + found.xss);
    ctx.expect(found.scripts === 0 && found.imgs === 0 && found.onerror === 0,
      'markup from a payload became elements: ' + JSON.stringify(found));
    return found;
  });

  await step('no CSP or Trusted Types violation, no uncaught error', async () => {
    const bad = ctx.consoleErrors.filter((e) =>
      /Content Security Policy|Trusted ?Type|TrustedHTML|TrustedScript|uncaught/i.test(e.text));
    ctx.expect(bad.length === 0, 'console errors: ' + JSON.stringify(bad));
    return { other_console_errors: ctx.consoleErrors.filter((e) => !bad.includes(e)) };
  });
};
