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
  const width = () => phone.evaluate(() => ({
    scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));

  await step('the login form fits 390 px', async () => {
    await open(phone, ctx.url);
    await phone.locator('#login input[name=token]').waitFor({ state: 'visible' });
    const w = await width();
    ctx.expect(w.scroll <= 390, 'the page is ' + w.scroll + ' px wide at 390 px');
    return w;
  });

  await step('the devices and firmware fit 390 px', async () => {
    await login(phone, ctx.url, token);
    await phone.locator('#devices ' + row(device)).waitFor();
    const w = await width();
    ctx.expect(w.scroll <= 390, 'the page is ' + w.scroll + ' px wide at 390 px');
    return w;
  });

  await step('the device page fits 390 px', async () => {
    await phone.goto(ctx.url + '#device/' + encodeURIComponent(device));
    await phone.locator('#device-page').waitFor({ state: 'visible' });
    const w = await width();
    ctx.expect(w.scroll <= 390, 'the page is ' + w.scroll + ' px wide at 390 px');
    return w;
  });
  void page;
};
