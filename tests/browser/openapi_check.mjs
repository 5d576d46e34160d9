// The OpenAPI document against the live portal: it is a valid OpenAPI 3.1 document
// (@apidevtools/swagger-parser), the portal serves it byte for byte, every documented operation
// exists and is exercised here, every answer's status is documented for its operation and its
// body validates against the documented schema (Ajv, JSON Schema 2020-12), documented headers
// (Location, Retry-After, WWW-Authenticate) are there, undocumented methods answer 405 and
// undocumented paths 404.
//
// Run by tests/integration/openapi_test.sh, which starts `mte serve` and passes, in the
// environment: OPENAPI_FILE, PORTAL_PORT, CA_FILE, ADMIN_NAME, ADMIN_PASSWORD_FILE, USER_NAME,
// USER_PASSWORD_FILE, DEVICE_ID, CLAIM_CODE_FILE.
import https from 'node:https';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import SwaggerParser from '@apidevtools/swagger-parser';
import Ajv2020 from 'ajv/dist/2020.js';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`missing environment variable ${name}`);
  return v;
};
const failures = [];
const check = (condition, message) => { if (!condition) failures.push(message); };
const fileText = (name) => readFileSync(env(name), 'utf8').trim();

const documentText = readFileSync(env('OPENAPI_FILE'), 'utf8');
// validate() checks the document against the OpenAPI 3.1 schema and resolves every $ref.
const api = await SwaggerParser.validate(JSON.parse(documentText));
console.log(`ok: ${env('OPENAPI_FILE')} is a valid OpenAPI ${api.openapi} document`);
const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });

const ca = readFileSync(env('CA_FILE'));
function call(method, path, { body, bearer, raw } = {}) {
  const headers = {};
  let data;
  if (body !== undefined) {
    data = raw ? body : JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = Buffer.byteLength(data);
  }
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: Number(env('PORTAL_PORT')), servername: 'localhost',
      ca, method, path, headers, timeout: 20000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    if (data !== undefined) req.write(data);
    req.end();
  });
}

const methods = ['get', 'post', 'put', 'patch', 'delete'];
const exercised = new Set();
const validators = new Map();
// One documented call: `template` is the documented path, `path` the concrete one.
async function op(method, template, path, options = {}) {
  const res = await call(method.toUpperCase(), path, options);
  const where = `${method.toUpperCase()} ${path} -> ${res.status}`;
  const operation = api.paths[template]?.[method];
  if (!operation) { check(false, `${where}: ${method} ${template} is not documented`); return res; }
  exercised.add(`${method} ${template}`);
  const documented = operation.responses[String(res.status)];
  if (!documented) {
    check(false, `${where}: status not documented (documented: ${Object.keys(operation.responses)}): ${res.text}`);
    return res;
  }
  const schema = documented.content?.['application/json']?.schema;
  if (schema) {
    const key = `${method} ${template} ${res.status}`;
    if (!validators.has(key)) validators.set(key, ajv.compile(schema));
    const validate = validators.get(key);
    if (res.json === undefined) check(false, `${where}: the body is not JSON: ${res.text.slice(0, 200)}`);
    else if (!validate(res.json)) {
      check(false, `${where}: the body does not match the documented schema: ` +
        `${ajv.errorsText(validate.errors)}; body ${res.text.slice(0, 300)}`);
    }
  }
  for (const header of Object.keys(documented.headers ?? {})) {
    // WWW-Authenticate belongs to a missing or invalid bearer token only.
    if (header === 'WWW-Authenticate' && options.bearer) continue;
    check(res.headers[header.toLowerCase()] !== undefined, `${where}: no ${header} header`);
  }
  return res;
}
const expect = (res, status, what) =>
  check(res.status === status, `${what}: expected ${status}, got ${res.status}: ${res.text.slice(0, 200)}`);

// The served document is the file, byte for byte.
const served = await op('get', '/api/v1/openapi.json', '/api/v1/openapi.json');
expect(served, 200, 'GET /api/v1/openapi.json');
check(served.text === documentText, 'the served document differs from src/portal/openapi.json');
check(/^application\/json/.test(served.headers['content-type'] ?? ''), 'the document is application/json');

expect(await op('get', '/api/v1/health', '/api/v1/health'), 200, 'health');

// Sessions.
const login = (name, password, extra = {}) =>
  op('post', '/api/v1/login', '/api/v1/login', { body: { name, password, ...extra } });
const adminPassword = fileText('ADMIN_PASSWORD_FILE');
expect(await login(env('ADMIN_NAME'), 'wrong password'), 401, 'a wrong password');
expect(await op('post', '/api/v1/login', '/api/v1/login', { body: '{"name":', raw: true }), 400, 'a broken body');
const admin = (await login(env('ADMIN_NAME'), adminPassword)).json?.token;
check(typeof admin === 'string', 'the admin signs in');
const userLogin = await login(env('USER_NAME'), fileText('USER_PASSWORD_FILE'));
const user = userLogin.json?.token;
expect(userLogin, 200, 'the user signs in');

// Account, API tokens, password.
expect(await op('get', '/api/v1/account', '/api/v1/account', { bearer: admin }), 200, 'account');
const created = await op('post', '/api/v1/account/tokens', '/api/v1/account/tokens',
  { bearer: admin, body: { name: 'openapi-check' } });
expect(created, 201, 'create an API token');
expect(await op('post', '/api/v1/account/tokens', '/api/v1/account/tokens',
  { bearer: admin, body: { name: 'openapi-check' } }), 409, 'a taken token name');
expect(await op('post', '/api/v1/account/tokens', '/api/v1/account/tokens',
  { bearer: admin, body: { name: 'no spaces allowed' } }), 400, 'a bad token name');
expect(await op('get', '/api/v1/account/tokens', '/api/v1/account/tokens', { bearer: created.json?.token }),
  200, 'list tokens with the new API token');
expect(await op('post', '/api/v1/account/password', '/api/v1/account/password',
  { bearer: admin, body: { currentPassword: 'not it', newPassword: 'a-long-enough-password' } }),
  403, 'a wrong current password');

// Two-step sign-in, with oathtool as the app.
const setup = await op('post', '/api/v1/account/totp', '/api/v1/account/totp', { bearer: user });
expect(setup, 201, 'TOTP setup');
const totpNow = (offset = 0) => execFileSync('oathtool', ['--totp', '-b', setup.json.secret, '--now',
  `@${Math.floor(Date.now() / 1000) + offset}`], { encoding: 'utf8' }).trim();
const good = totpNow();
const wrong = String((Number(good) + 500000) % 1000000).padStart(6, '0');
expect(await op('post', '/api/v1/account/totp/confirm', '/api/v1/account/totp/confirm',
  { bearer: user, body: { code: wrong } }), 401, 'confirm with a wrong code');
expect(await op('post', '/api/v1/account/totp/confirm', '/api/v1/account/totp/confirm',
  { bearer: user, body: {} }), 400, 'confirm without a code');
const confirmed = await op('post', '/api/v1/account/totp/confirm', '/api/v1/account/totp/confirm',
  { bearer: user, body: { code: good } });
expect(confirmed, 200, 'confirm with oathtool\'s code');
expect(await op('post', '/api/v1/account/totp', '/api/v1/account/totp', { bearer: user }), 409,
  'a second setup');
const needsCode = await login(env('USER_NAME'), fileText('USER_PASSWORD_FILE'));
expect(needsCode, 401, 'the password alone');
check(needsCode.json?.totpRequired === true, 'the 401 says a code is required');
const codes = confirmed.json?.recoveryCodes ?? [];
const renewed = await op('post', '/api/v1/account/recovery-codes', '/api/v1/account/recovery-codes',
  { bearer: user, body: { code: codes[0] } });
expect(renewed, 200, 'new recovery codes');
expect(await op('post', '/api/v1/account/totp/disable', '/api/v1/account/totp/disable',
  { bearer: user, body: { code: renewed.json?.recoveryCodes?.[0] } }), 200, 'disable');
expect(await op('post', '/api/v1/account/recovery-codes', '/api/v1/account/recovery-codes',
  { bearer: user, body: { code: '123456' } }), 404, 'recovery codes without TOTP');

// Enrolees: a Flow B entry and a Flow A claim.
const entry = await op('post', '/api/v1/enrolees', '/api/v1/enrolees',
  { bearer: user, body: { label: 'Boiler', deviceInfo: 'cellar' } });
expect(entry, 201, 'a Flow B entry');
const id = entry.json?.id;
expect(await op('post', '/api/v1/enrolees', '/api/v1/enrolees', { bearer: user, body: {} }), 400,
  'an entry with nothing to identify it');
expect(await op('post', '/api/v1/enrolees', '/api/v1/enrolees',
  { bearer: user, body: { deviceId: env('DEVICE_ID'), claimCode: 'wrong-code' } }), 403, 'a wrong claim code');
const claimed = await op('post', '/api/v1/enrolees', '/api/v1/enrolees',
  { bearer: user, body: { deviceId: env('DEVICE_ID'), claimCode: fileText('CLAIM_CODE_FILE'), label: 'Lamp' } });
expect(claimed, 201, 'a claim');
expect(await op('post', '/api/v1/enrolees', '/api/v1/enrolees',
  { bearer: user, body: { deviceId: env('DEVICE_ID'), claimCode: fileText('CLAIM_CODE_FILE') } }), 409,
  'the same device again');
expect(await op('get', '/api/v1/enrolees', '/api/v1/enrolees', { bearer: user }), 200, 'list');
expect(await op('get', '/api/v1/enrolees', '/api/v1/enrolees', { bearer: admin }), 200, 'list (admin)');
expect(await op('get', '/api/v1/enrolees/{id}', `/api/v1/enrolees/${id}`, { bearer: user }), 200, 'one');
expect(await op('get', '/api/v1/enrolees/{id}', '/api/v1/enrolees/99999', { bearer: user }), 404, 'unknown');
expect(await op('post', '/api/v1/enrolees/{id}/tokens', `/api/v1/enrolees/${id}/tokens`, { bearer: user }),
  201, 'a token');
expect(await op('post', '/api/v1/enrolees/{id}/tokens', '/api/v1/enrolees/99999/tokens', { bearer: user }),
  404, 'a token for an unknown enrolee');
expect(await op('get', '/api/v1/enrolees/{id}/timeline', `/api/v1/enrolees/${id}/timeline`, { bearer: user }),
  200, 'timeline');
expect(await op('get', '/api/v1/enrolees/{id}/timeline', '/api/v1/enrolees/x/timeline', { bearer: user }),
  404, 'timeline of a malformed id');
expect(await op('post', '/api/v1/enrolees/{id}/revoke', `/api/v1/enrolees/${id}/revoke`, { bearer: user }),
  200, 'revoke');
expect(await op('post', '/api/v1/enrolees/{id}/revoke', '/api/v1/enrolees/99999/revoke', { bearer: user }),
  404, 'revoke an unknown enrolee');
expect(await op('delete', '/api/v1/enrolees/{id}', `/api/v1/enrolees/${claimed.json?.id}`, { bearer: user }),
  200, 'delete a pending enrolee');
expect(await op('delete', '/api/v1/enrolees/{id}', `/api/v1/enrolees/${claimed.json?.id}`, { bearer: user }),
  404, 'delete it again');

// The audit log, for admins only.
expect(await op('get', '/api/v1/audit', '/api/v1/audit', { bearer: admin }), 200, 'audit (admin)');
expect(await op('get', '/api/v1/audit', '/api/v1/audit', { bearer: user }), 403, 'audit (not admin)');

// Undocumented methods on documented paths answer 405; undocumented paths 404.
for (const [template, item] of Object.entries(api.paths)) {
  const path = template.replace('{id}', String(id)).replace('{tokenId}', '99999');
  for (const method of methods.filter((m) => !item[m])) {
    const res = await call(method.toUpperCase(), path, { bearer: admin });
    check(res.status === 405, `${method.toUpperCase()} ${path} (undocumented): expected 405, got ${res.status}`);
  }
}
for (const path of ['/api/v1', '/api/v1/', '/api/v1/stakeholders', '/api/v2/enrolees', '/api/v1/enrolees/1/keys',
  '/api/v1/enrolees/1/tokens/1', '/api/v1/account/keys', '/api/v1/account/totp/1', '/api/v1/health/x']) {
  const res = await call('GET', path, { bearer: admin });
  check(res.status === 404 || res.status === 405, `GET ${path} (undocumented): expected 404, got ${res.status}`);
}

// Token revocation, logout, no credentials; the lockout last (it locks this address).
const tokenId = created.json?.id;
expect(await op('delete', '/api/v1/account/tokens/{tokenId}', `/api/v1/account/tokens/${tokenId}`, { bearer: admin }),
  200, 'revoke the API token');
expect(await op('delete', '/api/v1/account/tokens/{tokenId}', `/api/v1/account/tokens/${tokenId}`, { bearer: admin }),
  404, 'revoke it again');
expect(await op('post', '/api/v1/logout', '/api/v1/logout', { bearer: user }), 200, 'logout');
expect(await op('get', '/api/v1/enrolees', '/api/v1/enrolees', { bearer: user }), 401, 'after logout');
expect(await op('get', '/api/v1/enrolees', '/api/v1/enrolees'), 401, 'no bearer token');
for (let i = 0; i < 5; ++i) await login('nobody', `wrong-${i}`);
expect(await login(env('ADMIN_NAME'), adminPassword), 429, 'a locked address');

// Every documented operation was exercised.
for (const [template, item] of Object.entries(api.paths)) {
  for (const method of methods.filter((m) => item[m])) {
    check(exercised.has(`${method} ${template}`), `${method.toUpperCase()} ${template} was not exercised`);
  }
}
console.log(`${exercised.size} documented operations exercised, ${validators.size} response schemas checked`);
if (failures.length) {
  for (const f of failures) console.error(`FAIL: ${f}`);
  process.exit(1);
}
console.log('ok: the portal answers as its OpenAPI document says');
