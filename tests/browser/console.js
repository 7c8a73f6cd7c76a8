// What the console scenarios share: logging in through the form, and the
// selectors of the console's contract (DOM hooks named in issue 17).
'use strict';

// The device row of `id` (ids are checked by the cloud, but quote anyway).
function row(id) {
  return 'tr[data-device=' + JSON.stringify(String(id)) + ']';
}

function firmwareRow(version) {
  return 'tr[data-firmware=' + JSON.stringify(String(version)) + ']';
}

// Opens `url`, failing at once (not after a wait for the form) when the
// cloud does not answer it with the page.
async function open(page, url) {
  const res = await page.goto(url);
  if (!res || !res.ok()) throw new Error('GET ' + url + ' answered ' + (res ? res.status() : 'nothing'));
  return res;
}

// Opens the console at `url` and logs in with `token` through the form,
// as a user types it; resolves once the app shows and the form is gone.
async function login(page, url, token) {
  await open(page, url);
  const input = page.locator('#login input[name=token]');
  await input.waitFor({ state: 'visible' });
  await input.fill(token);
  await input.press('Enter');
  // the console, or the form again with why (failing now, not at the timeout)
  const refused = await until(page, '#app or a #login-error', () => {
    const app = document.querySelector('#app');
    const error = document.querySelector('#login-error');
    if (app && app.checkVisibility()) return 'in';
    return error && error.textContent.trim() ? 'refused: ' + error.textContent.trim() : false;
  });
  if (refused !== 'in') throw new Error('logging in failed, ' + refused);
  await page.locator('#login').waitFor({ state: 'hidden' });
}

// The texts of the activity feed's lines, oldest first.
function activity(page) {
  return page.$$eval('ol#activity > li', (lis) => lis.map((li) => li.textContent));
}

// Waits until `fn` (run in the page, given `arg`) returns a truthy value,
// which it returns; `what` names the wait in the timeout's message.
async function until(page, what, fn, arg, timeout) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: timeout || 30000, polling: 100 });
    return await handle.jsonValue();
  } catch (e) {
    if (e.name === 'TimeoutError') throw new Error('timed out waiting for ' + what);
    throw e;
  }
}

module.exports = { row, firmwareRow, open, login, activity, until };
