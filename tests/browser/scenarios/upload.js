// Uploading a firmware from the browser: a .hex and its .minisig picked in
// the upload form; its row appears with size, MD5, "signed" and the key id.
//   params: token, device, version, hex (path), sig (path), size, md5, key_id
'use strict';
const { firmwareRow, login, until } = require('../console');

module.exports = async function (page, ctx, step) {
  const p = ctx.params;
  const fw = page.locator('#firmwares ' + firmwareRow(p.version));

  await step('log in', async () => {
    await login(page, ctx.url, p.token);
    ctx.expect(await fw.count() === 0, 'version ' + p.version + ' is listed before the upload');
  });

  await step('upload the .hex and its .minisig', async () => {
    const form = page.locator('#upload');
    await form.locator('input[name=version]').fill(p.version);
    await form.locator('input[name=hex]').setInputFiles(p.hex);
    await form.locator('input[name=sig]').setInputFiles(p.sig);
    await form.locator('button[type=submit], input[type=submit], button:not([type])').first().click();
    await page.locator('#upload-result').filter({ hasText: /\S/ }).waitFor();
    await fw.waitFor();
    return (await page.locator('#upload-result').textContent()).trim();
  });

  await step('the row shows size, MD5, signed and the key id', async () => {
    const cell = async (c) => ((await fw.locator('td.' + c).textContent()) || '').trim();
    const got = { version: await cell('version'), size: await cell('size'), md5: await cell('md5'),
      signed: await cell('signed'), key_id: await cell('key-id') };
    ctx.expect(got.version === p.version, 'td.version says ' + JSON.stringify(got.version));
    // the size as the page writes it: the byte count, maybe grouped ("5,311" or "5 311 bytes")
    ctx.expect(got.size.replace(/[^\d]/g, '') === String(p.size),
      'td.size says ' + JSON.stringify(got.size) + ', the file has ' + p.size + ' bytes');
    ctx.expect(got.md5.toLowerCase() === p.md5, 'td.md5 says ' + JSON.stringify(got.md5) + ', expected ' + p.md5);
    ctx.expect(got.signed === 'signed', 'td.signed says ' + JSON.stringify(got.signed));
    ctx.expect(got.key_id.toUpperCase().includes(p.key_id.toUpperCase()),
      'td.key-id says ' + JSON.stringify(got.key_id) + ', the key is ' + p.key_id);
    return got;
  });

  await step('the device row offers the new version to push', async () => {
    await until(page, 'version ' + p.version + ' in the push select of ' + p.device, (a) => {
      const sel = document.querySelector('#devices tr[data-device="' + CSS.escape(a.device) + '"] select.push-version');
      return sel && [...sel.options].some((o) => o.value === a.version);
    }, { device: p.device, version: p.version });
  });
};
