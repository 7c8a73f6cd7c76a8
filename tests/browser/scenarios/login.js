// The console asks for the admin token: a wrong one is refused with the
// server's message, the right one shows the devices; the token lives in the
// tab's sessionStorage only, and a #token= fragment logs in once and
// leaves the address bar.
//   params: token, device
'use strict';
const { row, open } = require('../console');

module.exports = async function (page, ctx, step) {
  const { token, device } = ctx.params;

  await step('the login form shows, the console does not', async () => {
    await open(page, ctx.url);
    const input = page.locator('#login input[name=token]');
    await input.waitFor({ state: 'visible' });
    ctx.expect(await input.getAttribute('type') === 'password', 'the token field is not type=password');
    ctx.expect(await page.locator('#login button[type=submit], #login input[type=submit], #login button:not([type])')
      .count() > 0, 'the login form has no submit button');
    ctx.expect(!(await page.locator('#app').isVisible()), '#app is visible before logging in');
  });

  await step('a wrong token is refused with the server\'s message', async () => {
    const input = page.locator('#login input[name=token]');
    await input.fill('0'.repeat(token.length));
    await input.press('Enter');
    const error = page.locator('#login-error');
    await error.filter({ hasText: /\S/ }).waitFor({ state: 'visible' });
    ctx.expect(!(await page.locator('#app').isVisible()), '#app shows after a wrong token');
    ctx.expect(await page.evaluate(() => Object.values(sessionStorage).length === 0
      || !Object.values(sessionStorage).some((v) => /^0+$/.test(v))), 'a refused token was kept');
    return (await error.textContent()).trim();
  });

  await step('the right token shows the devices table', async () => {
    const input = page.locator('#login input[name=token]');
    await input.fill(token);
    await page.locator('#login').locator('button, input[type=submit]').first().click();
    await page.locator('#app').waitFor({ state: 'visible' });
    await page.locator('#login').waitFor({ state: 'hidden' });
    await page.locator('#devices ' + row(device)).waitFor();
    const rows = await page.locator('#devices tr[data-device]').count();
    // the header says the page follows the cloud once it has loaded, not from the first event on
    const live = (await page.locator('#live .live-text').textContent()).trim();
    ctx.expect(live === 'live', 'the header says "' + live + '" once the devices show');
    return rows + ' device row(s)';
  });

  await step('the token is kept in sessionStorage, not localStorage, and survives a reload', async () => {
    const where = await page.evaluate((t) => ({
      session: Object.values(sessionStorage).some((v) => v.includes(t)),
      local: Object.values(localStorage).some((v) => v.includes(t)),
      cookie: document.cookie.includes(t),
    }), token);
    ctx.expect(where.session, 'the token is not in sessionStorage');
    ctx.expect(!where.local, 'the token is in localStorage (it would outlive the tab)');
    ctx.expect(!where.cookie, 'the token is in a cookie script can read');
    await page.reload();
    await page.locator('#devices ' + row(device)).waitFor();
    ctx.expect(!(await page.locator('#login').isVisible()), 'the login form shows again after a reload');
  });

  await step('a #token= link logs in once and leaves the address bar', async () => {
    const other = await ctx.newPage();
    ctx.focus(other);
    await other.goto(ctx.url + '#token=' + encodeURIComponent(token));
    await other.locator('#devices ' + row(device)).waitFor();
    const href = await other.evaluate(() => location.href);
    ctx.expect(!href.includes(token), 'the token is still in the address bar: ' + href);
    await other.context().close();
    ctx.focus(page);
  });

  await step('the login form is usable with the keyboard alone', async () => {
    const fresh = await ctx.newPage();
    ctx.focus(fresh);
    await fresh.goto(ctx.url);
    await fresh.locator('#login input[name=token]').waitFor({ state: 'visible' });
    // Tab until the token field has focus (a real user's way in), then type.
    let reached = false;
    for (let i = 0; i < 20 && !reached; i++) {
      await fresh.keyboard.press('Tab');
      reached = await fresh.evaluate(() => document.activeElement && document.activeElement.name === 'token');
    }
    ctx.expect(reached, 'Tab never reaches the token field');
    await fresh.keyboard.type(token);
    await fresh.keyboard.press('Enter');
    await fresh.locator('#devices ' + row(device)).waitFor();
    await fresh.context().close();
    ctx.focus(page);
  });
};
