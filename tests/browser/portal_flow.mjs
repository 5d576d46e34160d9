// The portal in a real browser (Debian's Chromium, driven by playwright-core), end to end with
// the real device and OBF: sign in; add a Flow B entry; issue an Enrolment-Token; photograph the
// QR code on the page and hand the photo to `mte-obf deliver --qr` next to a waiting
// `mte-enrolee await-obf`; watch the entry turn "enrolled" without a reload; open its timeline;
// create an API token; turn on two-step sign-in; revoke the enrolee; sign in with a code. A screenshot of every page is kept.
//
// Run by tests/integration/browser_portal_test.sh, which starts `mte serve` and the device and
// passes everything in the environment:
//   PORTAL_URL, PORTAL_SPKI (base64 SHA-256 of the portal certificate's key, the only one the
//   browser accepts), USER_NAME, PASSWORD_FILE, OBF, DEVICE_ADDRESS, SETUP_CODE_FILE, SHOTS (a
//   directory), RESULT (a JSON file this script writes), BEFORE_REVOKE (a script run just
//   before the revocation; it must succeed).
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const portal = env('PORTAL_URL');
const shots = env('SHOTS');
const result = { screenshots: [] };

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// A full-page screenshot. `mustShow` is checked in the page's text now; `ocr` (default: all of
// mustShow) is what the shell test later reads back from the picture itself.
async function shoot(page, name, mustShow, ocr = mustShow) {
  const path = join(shots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  const text = await page.innerText('body');
  for (const expected of mustShow) {
    check(text.includes(expected), `${name}: the page does not show "${expected}"`);
  }
  result.screenshots.push({ name, path, mustShow: ocr });
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // Trust exactly the portal's key (the MTE's own CA is not in the browser's store).
    `--ignore-certificate-errors-spki-list=${env('PORTAL_SPKI')}`,
  ],
});
let obf;
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, deviceScaleFactor: 2 });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  // Sign in.
  await page.goto(portal + '/');
  check(new URL(page.url()).pathname === '/login', `/ should lead to /login, not ${page.url()}`);
  await shoot(page, '01-login', ['Sign in', 'Name', 'Password'], ['Sign in', 'Password']);
  await page.getByLabel('Name').fill(env('USER_NAME'));
  await page.getByLabel('Password').fill(readFileSync(env('PASSWORD_FILE'), 'utf8').trim());
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/enrolees');
  await shoot(page, '02-enrolees-empty', ['Enrolees', 'No enrolees yet', 'Add an entry for an OBF']);

  // A Flow B entry.
  await page.getByLabel('Label', { exact: true }).nth(1).fill('Web boiler');
  await page.getByLabel('Identifying information').fill('cellar, serial WB-1');
  await page.getByRole('button', { name: 'Add entry' }).click();
  await page.waitForURL(/\/enrolees\/\d+$/);
  const enroleeId = Number(new URL(page.url()).pathname.split('/').pop());
  result.enroleeId = enroleeId;
  await shoot(page, '03-enrolee-pending', ['Web boiler', 'pending', 'Timeline', 'enrolee.add']);

  // The Enrolment-Token, as a QR code.
  await page.getByRole('button', { name: 'Issue an Enrolment-Token' }).click();
  await page.waitForSelector('#bundle-qr svg');
  await shoot(page, '04-token', ['Enrolment-Token for enrolee', 'token issued', 'Download the token bundle'],
    ['Enrolment-Token for enrolee', 'Shown once', 'Download the token bundle']);
  const qrPhoto = join(shots, 'bundle-qr.png');
  await page.locator('#bundle-qr svg').screenshot({ path: qrPhoto });
  result.qrPhoto = qrPhoto;
  if (process.env.QR_DECODED_CHECK) {
    execFileSync('bash', [process.env.QR_DECODED_CHECK, qrPhoto], { stdio: 'inherit' });
  }

  // The technician's OBF reads the photo and on-boards the waiting device.
  const obfLog = [];
  const obfDone = new Promise((resolve) => {
    obf = spawn(env('OBF'), ['deliver', '--qr', qrPhoto, '--device', env('DEVICE_ADDRESS'),
      '--setup-code-file', env('SETUP_CODE_FILE'), '--timeout-s', '60'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    obf.stdout.on('data', (d) => obfLog.push(String(d)));
    obf.stderr.on('data', (d) => obfLog.push(String(d)));
    obf.on('exit', (code) => resolve(code));
  });
  // The page turns "enrolled" by itself (its script polls /states).
  const badge = page.locator(`[data-enrolee-state="${enroleeId}"]`);
  await badge.filter({ hasText: 'enrolled' }).waitFor({ timeout: 90000 });
  const obfCode = await obfDone;
  obf = undefined;
  writeFileSync(join(shots, 'mte-obf.log'), obfLog.join(''));
  check(obfCode === 0, `mte-obf deliver --qr exited ${obfCode}:\n${obfLog.join('')}`);
  await shoot(page, '05-token-enrolled', ['enrolled'], ['Enrolment-Token for enrolee']);
  // The badge that changed by itself, on its own, read back as one line of text.
  const badgeShot = join(shots, '05b-state-badge.png');
  await badge.screenshot({ path: badgeShot });
  result.screenshots.push({ name: '05b-state-badge', path: badgeShot, mustShow: ['enrolled'], psm: 7, small: true });

  // Its timeline.
  await page.goto(`${portal}/enrolees/${enroleeId}`);
  await shoot(page, '06-timeline', ['enrolled', 'PPSK', 'enrolee.add', 'token.issue', 'enrolment.commit'],
    ['Web boiler', 'PPSK', 'Timeline', 'token.issue']);
  const keId = (await page.locator('dt:text-is("KeID") + dd').innerText()).trim();
  result.keId = keId;

  // An API token for scripts, on the account page.
  await page.getByRole('link', { name: 'Account' }).click();
  await page.getByLabel('New token name').fill('browser-test');
  await page.getByRole('button', { name: 'Create API token' }).click();
  const apiToken = (await page.locator('#new-api-token').innerText()).trim();
  check(apiToken.startsWith('mtept_'), 'an API token starts with mtept_');
  await shoot(page, '07-account', ['Personal API tokens', 'browser-test', 'Change password']);

  // Two-step sign-in: the key as a QR code (read back with zbarimg), the first code from
  // oathtool, then the recovery codes, shown once.
  await page.getByRole('button', { name: 'Set up two-step sign-in' }).click();
  await page.waitForSelector('#totp-qr svg');
  const totpSecret = (await page.locator('#totp-secret').innerText()).trim();
  check(/^[A-Z2-7]{32}$/.test(totpSecret), `a base32 TOTP key, not ${totpSecret}`);
  await shoot(page, '07b-totp-setup', ['Set up two-step sign-in', totpSecret, 'Turn on'],
    ['Set up two-step sign-in', 'authenticator app']);
  const totpQr = join(shots, 'totp-qr.png');
  await page.locator('#totp-qr svg').screenshot({ path: totpQr });
  const otpauth = execFileSync('zbarimg', ['--quiet', '--raw', totpQr], { encoding: 'utf8' }).trim();
  check(otpauth === `otpauth://totp/OpenMTE:${env('USER_NAME')}?secret=${totpSecret}` +
    '&issuer=OpenMTE&algorithm=SHA1&digits=6&period=30', `the QR code holds ${otpauth}`);
  const totpAt = (seconds) => execFileSync('oathtool',
    ['--totp', '-b', totpSecret, '--now', `@${Math.floor(Date.now() / 1000) + seconds}`],
    { encoding: 'utf8' }).trim();
  await page.getByLabel('The code the app shows now').fill(totpAt(0));
  await page.getByRole('button', { name: 'Turn on' }).click();
  await page.waitForSelector('#recovery-codes li');
  const recoveryCodes = await page.locator('#recovery-codes li').allInnerTexts();
  check(recoveryCodes.length === 10, `ten recovery codes, not ${recoveryCodes.length}`);
  await shoot(page, '07c-recovery-codes', ['Two-step sign-in is on', 'Your recovery codes', '10 recovery codes left'],
    ['Your recovery codes', 'recovery codes left']);

  // Before the revocation the credential works (BEFORE_REVOKE checks the MAF); then revoke.
  execFileSync('bash', [env('BEFORE_REVOKE')], { stdio: 'inherit' });
  await page.goto(`${portal}/enrolees/${enroleeId}`);
  await page.getByRole('button', { name: 'Revoke' }).click();
  await page.locator(`[data-enrolee-state="${enroleeId}"]`).filter({ hasText: 'revoked' }).waitFor();
  await shoot(page, '08-revoked', ['Revoked:', 'revoked', 'enrolee.revoke', 'Re-arm with a new Enrolment-Token'],
    ['Revoked:', 'the MAF retires its credentials', 'Timeline']);

  // Signing out ends the session: the enrolee page asks for a sign-in again.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL('**/login');
  await page.goto(`${portal}/enrolees/${enroleeId}`);
  check(new URL(page.url()).pathname === '/login', 'after sign-out the pages need a sign-in');
  await shoot(page, '09-signed-out', ['Sign in']);

  // With two-step sign-in on, the password alone is not enough; with the app's next code it is.
  await page.getByLabel('Name').fill(env('USER_NAME'));
  await page.getByLabel('Password').fill(readFileSync(env('PASSWORD_FILE'), 'utf8').trim());
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('This account uses two-step sign-in').waitFor();
  await shoot(page, '10-login-needs-code', ['two-step sign-in', 'Authentication code'],
    ['Sign in', 'Authentication code']);
  await page.getByLabel('Name').fill(env('USER_NAME'));
  await page.getByLabel('Password').fill(readFileSync(env('PASSWORD_FILE'), 'utf8').trim());
  await page.getByLabel('Authentication code').fill(totpAt(30));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/enrolees');
  await shoot(page, '11-signed-in-with-code', ['Enrolees', 'Web boiler']);

  check(consoleErrors.length === 0, `the pages logged errors: ${consoleErrors.join('; ')}`);
  writeFileSync(env('RESULT'), JSON.stringify(result, null, 2));
} finally {
  if (obf) obf.kill();
  await browser.close();
}
