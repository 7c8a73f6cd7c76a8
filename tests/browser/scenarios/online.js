// A device goes green live: the page is open (the device grey) before the
// app starts; the spec starts it on the signal "page open", and the dot
// turns online without a reload.
//   params: token, device, timeout (s)
'use strict';
const { row, login, activity, until } = require('../console');

module.exports = async function (page, ctx, step) {
  const { token, device } = ctx.params;
  const timeout = Number(ctx.params.timeout || 60) * 1000;
  const dot = page.locator('#devices ' + row(device) + ' .dot');

  await step('the device shows offline (grey)', async () => {
    await login(page, ctx.url, token);
    await dot.waitFor();
    const state = await dot.getAttribute('data-state');
    ctx.expect(state === 'offline', 'the dot says ' + state + ' before the app started');
    // a mark a reload would wipe: the change below must come live
    await page.evaluate(() => { window.__notReloaded = true; });
  });

  ctx.signal('page open');

  await step('the device goes online (green) live', async () => {
    await page.locator('#devices ' + row(device) + ' .dot[data-state=online]').waitFor({ timeout });
    ctx.expect(await page.evaluate(() => window.__notReloaded === true), 'the page reloaded');
    const colour = await dot.evaluate((el) => getComputedStyle(el).backgroundColor);
    const peer = (await page.locator('#devices ' + row(device) + ' td.peer').textContent()).trim();
    ctx.expect(peer !== '', 'td.peer is empty for a connected device');
    return { colour, peer };
  });

  await step('the activity feed says it connected', async () => {
    await until(page, 'an activity line "' + device + ' connected"', (id) =>
      [...document.querySelectorAll('ol#activity > li')].some((li) => li.textContent.includes(id + ' connected')),
    device);
    return (await activity(page)).slice(-3);
  });

  await step('a heartbeat arrives', async () => {
    const cell = page.locator('#devices ' + row(device) + ' td.heartbeat');
    await cell.filter({ hasText: /\d/ }).waitFor({ timeout });
    return (await cell.textContent()).trim();
  });
};
