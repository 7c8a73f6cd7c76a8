// A flood of heartbeats leaves the activity feed readable: the lines shown
// before (a device's data point) are still shown after the spec sent many
// heartbeats of a device by TCP, heartbeats stay out of the feed until
// asked for, and the row's heartbeat time follows without the page reading
// the devices again for each one. The spec starts the flood on the signal
// "page open" and ends it with a data point whose value is `last`.
//   params: token, device (the flooding one), first, last (its data points' values), timeout (s)
'use strict';
const { row, login, until } = require('../console');

function visibleLines(page) {
  return page.$$eval('ol#activity > li', (lis) => lis.filter((li) => li.checkVisibility()).map((li) => li.textContent));
}

module.exports = async function (page, ctx, step) {
  const { token, device, first, last } = ctx.params;
  const timeout = Number(ctx.params.timeout || 60) * 1000;
  let before;
  let reads = 0;
  page.on('request', (req) => {
    if (new URL(req.url()).pathname === '/admin/devices') reads++;
  });

  await step('log in: the feed shows the device\'s data point', async () => {
    await login(page, ctx.url, token);
    await page.locator('#devices ' + row(device)).waitFor();
    await until(page, 'the line of ' + first, (v) =>
      [...document.querySelectorAll('ol#activity > li')].some((li) => li.textContent.endsWith(' ' + v)), first);
    before = await visibleLines(page);
    reads = 0;
    return before.slice(-5);
  });

  ctx.signal('page open');

  await step('after the flood the lines shown before are still shown, and no heartbeat', async () => {
    await until(page, 'the line of ' + last, (v) =>
      [...document.querySelectorAll('ol#activity > li')].some((li) => li.textContent.endsWith(' ' + v)), last, timeout);
    const after = await visibleLines(page);
    // (the newest lines: the flood's own connection and data point push the oldest out of a full feed)
    const lost = before.slice(-20).filter((t) => !after.includes(t));
    ctx.expect(lost.length === 0, lost.length + ' lines left the feed, such as ' + JSON.stringify(lost.slice(0, 3)));
    const beats = after.filter((t) => / heartbeat$/.test(t));
    ctx.expect(beats.length === 0, beats.length + ' heartbeat lines shown, not asked for');
    return { before: before.length, after: after.length, reads };
  });

  await step('the row shows the last heartbeat\'s time; the devices were not read for each', async () => {
    const cell = page.locator('#devices ' + row(device) + ' td.heartbeat');
    const text = (await cell.textContent()).trim();
    ctx.expect(/^\d\d:\d\d:\d\d$/.test(text), 'td.heartbeat says ' + JSON.stringify(text));
    ctx.expect(reads <= 10, '/admin/devices was read ' + reads + ' times during the flood');
    return { text, reads };
  });

  await step('asked for, the heartbeats show, in order, the feed bounded', async () => {
    await page.locator('#show-heartbeats').check();
    const lines = await visibleLines(page);
    const beats = lines.filter((t) => t.includes(device + ' heartbeat'));
    ctx.expect(beats.length > 0, 'no heartbeat line after asking for them');
    ctx.expect(lines.length <= 300, lines.length + ' lines in the feed');
    await page.locator('#show-heartbeats').uncheck();
    const again = await visibleLines(page);
    ctx.expect(again.includes(before[before.length - 1]), 'the last line before the flood is gone: ' + JSON.stringify(again.slice(-3)));
    return { lines: lines.length, beats: beats.length };
  });
};
