// Push from the keyboard: the device row's Push button reached with Tab and
// pressed with Enter; the statuses arrive live, in order, in the activity
// feed and the row; the version cell changes; the device page shows the
// history. (The spec then checks the chip holds the image.)
//   params: token, device, version, timeout (s)
'use strict';
const { row, login, until } = require('../console');

const SEQUENCE = ['downloading', 'verifying', 'flashing', 'done'];

module.exports = async function (page, ctx, step) {
  const { token, device, version } = ctx.params;
  const timeout = Number(ctx.params.timeout || 120) * 1000;
  const r = page.locator('#devices ' + row(device));
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.accept(); });

  await step('log in; the device is online', async () => {
    await login(page, ctx.url, token);
    await r.locator('.dot[data-state=online]').waitFor({ timeout });
    return { version: ((await r.locator('td.version').textContent()) || '').trim() };
  });

  await step('pick the version to push', async () => {
    await r.locator('select.push-version').selectOption(version);
    // every status line and status cell change from now on, with when it came
    await page.evaluate((id) => {
      window.__notReloaded = true;
      window.__seen = { feed: [], cell: [] };
      const t0 = performance.now();
      const feed = document.querySelector('ol#activity');
      new MutationObserver((records) => {
        for (const rec of records) {
          for (const n of rec.addedNodes) {
            if (n.nodeName === 'LI') window.__seen.feed.push({ ms: performance.now() - t0, text: n.textContent });
          }
        }
      }).observe(feed, { childList: true });
      const cell = () => document.querySelector('#devices tr[data-device="' + CSS.escape(id) + '"] td.status');
      let last = cell() && cell().textContent;
      // the row may be redrawn: watch the table, note each new status text
      new MutationObserver(() => {
        const c = cell();
        const now = c && c.textContent;
        if (now !== last) { last = now; window.__seen.cell.push({ ms: performance.now() - t0, text: now }); }
      }).observe(document.querySelector('#devices'), { childList: true, subtree: true, characterData: true });
    }, device);
  });

  await step('Tab reaches the row\'s Push button, with a visible focus outline', async () => {
    const target = await r.locator('button.push').elementHandle();
    let presses = 0;
    let reached = false;
    while (!reached && presses < 300) {
      await page.keyboard.press('Tab');
      presses++;
      reached = await target.evaluate((b) => document.activeElement === b);
    }
    ctx.expect(reached, 'Tab never reached the Push button of ' + device + ' (' + presses + ' presses)');
    const look = await target.evaluate((b) => {
      const s = getComputedStyle(b);
      return { outline: s.outlineStyle + ' ' + s.outlineWidth, shadow: s.boxShadow, text: b.textContent.trim(),
        focusVisible: b.matches(':focus-visible') };
    });
    ctx.expect(look.focusVisible, 'the focused Push button does not match :focus-visible');
    ctx.expect((look.outline.split(' ')[0] !== 'none' && !look.outline.endsWith(' 0px')) || look.shadow !== 'none',
      'the focused Push button shows no outline: ' + JSON.stringify(look));
    return Object.assign({ presses }, look);
  });

  await step('Enter pushes once: the focus stays on Push, a second Enter while it is under way sends nothing', async () => {
    const button = await r.locator('button.push').elementHandle();
    // every push the page asks for, counted as it asks (no network delay)
    await page.evaluate(() => {
      const real = window.fetch;
      window.__pushes = 0;
      window.fetch = function (url) {
        if (/\/fota$/.test(String(url))) window.__pushes++;
        return real.apply(this, arguments);
      };
    });
    // the push's answer is held until the second Enter was pressed
    let held;
    const asked = new Promise((ok) => { held = ok; });
    await page.route((u) => /\/admin\/devices\/[^/]+\/fota$/.test(u.pathname), (route) => held(route));
    await page.keyboard.press('Enter');
    const route = await asked;
    const during = await button.evaluate((b) => ({ focused: document.activeElement === b,
      busy: b.getAttribute('aria-disabled') }));
    await page.keyboard.press('Enter');
    const pushes = await page.evaluate(() => window.__pushes);
    await route.continue();
    await page.unrouteAll({ behavior: 'ignoreErrors' });
    ctx.expect(during.focused, 'the focus left the Push button when it was pressed');
    ctx.expect(pushes === 1, 'a second Enter during the push sent ' + (pushes - 1) + ' more');
    await until(page, 'the push\'s notice', () => /pushed to/.test(document.querySelector('#notice').textContent));
    const after = await button.evaluate((b) => ({ focused: document.activeElement === b,
      busy: b.getAttribute('aria-disabled'), disabled: b.disabled }));
    ctx.expect(after.focused, 'the focus left the Push button once the push was sent');
    ctx.expect(after.busy === null && !after.disabled, 'Push stays off after the push: ' + JSON.stringify(after));
    return { during, pushes, after };
  });

  await step('downloading, verifying, flashing, done arrive live, in order, in the feed and the status cell', async () => {
    const final = await until(page, 'a final fota_status of ' + device + ' in its row', (id) => {
      const c = document.querySelector('#devices tr[data-device="' + CSS.escape(id) + '"] td.status');
      const t = c ? c.textContent.trim() : '';
      return (t === 'done' || t.startsWith('failed')) && t;
    }, device, timeout);
    const seen = await page.evaluate(() => window.__seen);
    const feed = seen.feed.filter((l) => l.text.includes(' ' + device + ' ') && l.text.includes('fota_status'))
      .map((l) => ({ ms: Math.round(l.ms), value: l.text.replace(/^.*?fota_status\s*/, '').trim() }))
      .filter((l) => !l.value.startsWith('idle'));
    ctx.expect(final === 'done', 'the push ended with ' + JSON.stringify(final) + ' (feed: ' + JSON.stringify(feed) + ')');
    const values = feed.map((l) => l.value);
    ctx.expect(JSON.stringify(values) === JSON.stringify(SEQUENCE),
      'the feed showed ' + JSON.stringify(values) + ', expected ' + JSON.stringify(SEQUENCE));
    // the row's status cell showed each of them, in order, even when a
    // poll brought several together
    const cell = seen.cell.map((c) => (c.text || '').trim()).filter((v) => SEQUENCE.includes(v));
    ctx.expect(JSON.stringify(cell) === JSON.stringify(SEQUENCE),
      'td.status showed ' + JSON.stringify(cell) + ', expected ' + JSON.stringify(SEQUENCE));
    ctx.expect(await page.evaluate(() => window.__notReloaded === true), 'the page reloaded');
    return { feed, cell, dialogs };
  });

  await step('the version cell changes to the pushed version', async () => {
    await r.locator('td.version', { hasText: version }).waitFor({ timeout });
    const text = (await r.locator('td.version').textContent()).trim();
    ctx.expect(text === version, 'td.version says ' + JSON.stringify(text));
    return text;
  });

  await step('the device page shows the status history, oldest first', async () => {
    const link = r.locator('a[href^="#device/"]').first();
    await link.focus();
    await page.keyboard.press('Enter');
    const dp = page.locator('#device-page');
    await dp.waitFor({ state: 'visible' });
    await dp.locator('h2', { hasText: device }).waitFor();
    await until(page, 'done in the history', () => {
      const li = [...document.querySelectorAll('ol#history > li')];
      return li.length && /done$/.test(li[li.length - 1].textContent.trim());
    });
    const items = await page.$$eval('ol#history > li', (lis) => lis.map((li) => li.textContent.trim()));
    const tail = items.slice(-SEQUENCE.length);
    for (let i = 0; i < SEQUENCE.length; i++) {
      ctx.expect(/^\d\d:\d\d:\d\d /.test(tail[i]) && tail[i].endsWith(' ' + SEQUENCE[i]),
        'history ends ' + JSON.stringify(tail) + ', not HH:MM:SS ' + SEQUENCE.join(', '));
    }
    return tail;
  });
};
