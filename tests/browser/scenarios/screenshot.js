// The README's picture: the console at 1280x800 (one device pixel a CSS
// pixel), logged in, after the push, as a PNG at params.out; it must stay
// small (params.max_bytes).
//   params: token, device, version, out, max_bytes
'use strict';
const fs = require('fs');
const { row, login } = require('../console');

module.exports = async function (page, ctx, step) {
  const { token, device, version, out } = ctx.params;
  const max = Number(ctx.params.max_bytes || 102400);

  await step('the console after the push', async () => {
    await login(page, ctx.url, token);
    await page.locator('#devices ' + row(device) + ' .dot[data-state=online]').waitFor();
    await page.locator('#devices ' + row(device) + ' td.version', { hasText: version }).waitFor();
    await page.locator('ol#activity > li').first().waitFor();
    // the page as it settles: no caret, no focus ring in the picture
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
  });

  await step('a PNG of 1280x800, small enough', async () => {
    await page.screenshot({ path: out, type: 'png', fullPage: false, caret: 'hide', animations: 'disabled' });
    const png = fs.readFileSync(out);
    ctx.expect(png.subarray(1, 4).toString() === 'PNG', out + ' is not a PNG');
    const w = png.readUInt32BE(16);
    const h = png.readUInt32BE(20);
    ctx.expect(w === 1280 && h === 800, 'the picture is ' + w + 'x' + h);
    ctx.expect(png.length <= max, 'the picture has ' + png.length + ' bytes, more than ' + max);
    return { bytes: png.length, width: w, height: h };
  });
};
