// On a phone (390x844, a touch screen) the console fits the width: no
// horizontal scroll of the page on the login form, the devices and a
// device's page (tables scroll in their own box).
//   params: token, device
'use strict';
const { row, open, login } = require('../console');

module.exports = async function (page, ctx, step) {
  const { token, device } = ctx.params;
  const phone = await ctx.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1,
    isMobile: true, hasTouch: true });
  ctx.focus(phone);
  // The page's width, and the visible elements that reach past the
  // screen's right edge outside a box that scrolls or clips them (the body
  // clipping them would hide a too-wide layout from scrollWidth).
  const width = () => phone.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    const boxed = (e) => {
      for (let p = e.parentElement; p && p !== document.body && p !== document.documentElement; p = p.parentElement) {
        if (getComputedStyle(p).overflowX !== 'visible') return true;
      }
      return false;
    };
    const past = [...document.querySelectorAll('body *')].filter((e) => {
      const r = e.getBoundingClientRect();
      return r.width > 0 && r.height > 0 && r.right > vw + 1 && !boxed(e);
    }).map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + String(e.className)
      .trim().split(/\s+/).join('.') : '') + ' ' + Math.round(e.getBoundingClientRect().right) + 'px');
    return { scroll: document.documentElement.scrollWidth, client: vw, past: past.slice(0, 5) };
  });
  const fits = (w) => {
    ctx.expect(w.scroll <= 390, 'the page is ' + w.scroll + ' px wide at 390 px');
    ctx.expect(w.past.length === 0, 'cut off at the right edge: ' + w.past.join(', '));
    return w;
  };

  await step('the login form fits 390 px', async () => {
    await open(phone, ctx.url);
    await phone.locator('#login input[name=token]').waitFor({ state: 'visible' });
    return fits(await width());
  });

  await step('the devices and firmware fit 390 px', async () => {
    await login(phone, ctx.url, token);
    await phone.locator('#devices ' + row(device)).waitFor();
    return fits(await width());
  });

  await step('the device page fits 390 px', async () => {
    await phone.goto(ctx.url + '#device/' + encodeURIComponent(device));
    await phone.locator('#device-page').waitFor({ state: 'visible' });
    return fits(await width());
  });
  void page;
};
