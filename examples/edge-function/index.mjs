#!/usr/bin/env node
// The application path of docs/application.md, played against a real
// PostgreSQL the way PostgREST plays it for supabase-js:
//
//   * one connection as the login role `authenticator`;
//   * per request: BEGIN [READ ONLY]; SET LOCAL ROLE <role>;
//     SELECT set_config('search_path', $1, true), set_config('request.jwt.claims', $2, true);
//     the request's statement, every value a bind parameter; COMMIT;
//   * functions that are STABLE (hr_integration_secret) run READ ONLY, as
//     PostgREST runs them for POST /rpc and GET alike.
//
// It does what the hr-reference-submit edge function and the job-board and
// portal-session hooks do after the migrations, and checks every answer:
//   1. tokens (service_role): issue, verify (true), verify a wrong token
//      (false), revoke (true), verify again (false), revoke again (false);
//      an unknown reference (P0002); the anon key is refused (42501);
//   2. secrets (service_role): read an integration's secret, rotate its
//      refresh token (a whole secret is written: all three keys), read it
//      back; a partial secret is refused (22023) without echoing a value;
//   3. portal sessions (authenticated, a tenant's JWT claims): created
//      without and with organization_id (the trigger derives / checks it),
//      a disagreeing organization_id (23514), another tenant's JWT (42501);
//      RLS shows the sessions to their tenant only; then they are deleted.
// It prints what it did, never a token or a secret. Exit status 0 when every
// check held, 1 (with "FAIL: ...") otherwise.
//
// Settings (environment):
//   PGHOST (127.0.0.1), PGPORT (5432), PGDATABASE (postgres),
//   PGUSER (authenticator), PGPASSWORD   — read by `pg` itself
//   HR_REFERENCE_ID, HR_INTEGRATION_ID    — use these rows instead of the first ones found
//   HR_EXAMPLE_SECRETS_FILE               — if set, the token and every secret value this
//       program handled are appended there (one per line: label TAB base64 of the
//       UTF-8 value; mode 0600), so a test can search the server log for them.
//       Never set it in production.
//
// No network but the database connection. Node 18 or later.

import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import pg from 'pg';

const TIMEOUT_MS = 60_000;
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;
// Roles a request may run as; SET ROLE cannot take a bind parameter, so the
// name comes from this fixed list, never from input.
const ROLES = new Set(['anon', 'authenticated', 'service_role']);

class Mismatch extends Error {}
let stage = 'connect'; // for the failure message

const handled = []; // [label, value]: what the log must never contain
function remember(label, value) {
  if (typeof value === 'string' && value !== '') handled.push([label, value]);
}

function writeSecretsFile() {
  const path = process.env.HR_EXAMPLE_SECRETS_FILE;
  if (!path || handled.length === 0) return;
  const lines = handled.map(([l, v]) => `${l}\t${Buffer.from(v, 'utf8').toString('base64')}\n`).join('');
  appendFileSync(path, lines, { mode: 0o600 });
}

function ok(step, what) {
  console.log(`ok    ${step.padEnd(9)} ${what}`);
}

function expect(step, cond, message) {
  if (!cond) throw new Mismatch(`${step}: ${message}`);
}

// Runs `fn(query)` as one PostgREST-style request. `claims` is the JWT
// payload PostgREST would have verified.
async function request(client, ctx, { role, claims = { role }, readOnly = false }, fn) {
  if (!ROLES.has(role)) throw new Error(`unknown role ${role}`);
  await client.query(readOnly ? 'BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY' : 'BEGIN');
  try {
    await client.query(`SET LOCAL ROLE ${role}`);
    await client.query(
      "SELECT set_config('search_path', $1, true), set_config('request.jwt.claims', $2, true)",
      [ctx.searchPath, JSON.stringify(claims)],
    );
    const result = await fn((text, values) => client.query(text, values));
    await client.query('COMMIT');
    return result;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

// A request that must fail with `sqlstate`; returns the error.
async function refused(step, sqlstate, promise) {
  try {
    await promise;
  } catch (e) {
    if (e instanceof Mismatch) throw e;
    expect(step, e.code === sqlstate, `expected SQLSTATE ${sqlstate}, got ${e.code ?? 'no SQLSTATE'}: ${e.message}`);
    return e;
  }
  throw new Mismatch(`${step}: expected SQLSTATE ${sqlstate}, but the request succeeded`);
}

function errorText(e) {
  return [e.message, e.detail, e.hint, e.where].filter(Boolean).join(' | ');
}

function short(id) {
  return `${String(id).slice(0, 8)}…`;
}

async function discover(client, ctx) {
  // In the edge function these ids come from the request; here, from the data.
  return request(client, ctx, { role: 'service_role' }, async (q) => {
    const ref = process.env.HR_REFERENCE_ID
      ?? (await q('SELECT id FROM public.hr_references ORDER BY id LIMIT 1')).rows[0]?.id;
    const integ = process.env.HR_INTEGRATION_ID
      ?? (await q(`SELECT i.id FROM public.hr_job_board_integrations i
                    WHERE hr_integration_secret(i.id) IS NOT NULL ORDER BY i.id LIMIT 1`)).rows[0]?.id;
    const cand = (await q(`SELECT c.id, c.organization_id FROM public.hr_candidates c
                            WHERE c.organization_id IS NOT NULL ORDER BY c.id LIMIT 1`)).rows[0];
    const other = cand && (await q('SELECT id FROM public.pf_organizations WHERE id <> $1 ORDER BY id LIMIT 1',
      [cand.organization_id])).rows[0]?.id;
    expect('setup', ref, 'no hr_references row to work on');
    expect('setup', integ, 'no hr_job_board_integrations row holding a secret');
    expect('setup', cand && other, 'need a candidate with an organization and a second organization');
    return { ref, integ, candidate: cand.id, orgA: cand.organization_id, orgB: other };
  });
}

async function tokens(client, ctx, ref) {
  const sr = { role: 'service_role' };
  const token = await request(client, ctx, sr, async (q) =>
    (await q('SELECT hr_issue_reference_token($1) AS token', [ref])).rows[0].token);
  remember('issued_token', token);
  expect('issue', typeof token === 'string' && TOKEN_SHAPE.test(token), 'the token is not 43 base64url characters');
  ok('issue', `reference ${short(ref)}: a new token, ${token.length} base64url characters (shown once, stored as a salted hash)`);

  const verify = (t) => request(client, ctx, sr, async (q) =>
    (await q('SELECT hr_verify_reference_token($1, $2) AS ok', [ref, t])).rows[0].ok);
  const revoke = () => request(client, ctx, sr, async (q) =>
    (await q('SELECT hr_revoke_reference_token($1) AS revoked', [ref])).rows[0].revoked);

  let r = await verify(token);
  expect('verify', r === true, `the issued token should verify, got ${r}`);
  ok('verify', 'the issued token: true');

  const wrong = randomBytes(32).toString('base64url');
  remember('wrong_token', wrong);
  r = await verify(wrong);
  expect('verify', r === false, `a wrong token should not verify, got ${r}`);
  ok('verify', 'a wrong token of the same shape: false');

  r = await revoke();
  expect('revoke', r === true, `revoking a live token should return true, got ${r}`);
  ok('revoke', 'true');
  r = await verify(token);
  expect('revoke', r === false, `a revoked token should not verify, got ${r}`);
  ok('revoke', 'the revoked token no longer verifies: false');
  r = await revoke();
  expect('revoke', r === false, `revoking again should return false, got ${r}`);
  ok('revoke', 'again: false (nothing left to revoke)');

  const unknown = '00000000-0000-4000-8000-000000000000';
  await refused('issue', 'P0002', request(client, ctx, sr, (q) =>
    q('SELECT hr_issue_reference_token($1)', [unknown])));
  ok('issue', 'an unknown reference: P0002');

  await refused('anon', '42501', request(client, ctx, { role: 'anon' }, (q) =>
    q('SELECT hr_verify_reference_token($1, $2)', [ref, wrong])));
  ok('anon', 'the anon key cannot call hr_verify_reference_token: 42501');
}

function sameSecret(a, b) {
  const keys = ['api_key', 'api_secret', 'refresh_token'];
  return a && b && keys.every((k) => a[k] === b[k])
    && Object.keys(a).length === 3 && Object.keys(b).length === 3;
}

function describeSecret(s) {
  return ['api_key', 'api_secret', 'refresh_token']
    .map((k) => `${k} ${s[k] === null ? 'null' : s[k] === '' ? 'empty' : 'set'}`).join(', ');
}

async function secrets(client, ctx, integ) {
  const sr = { role: 'service_role' };
  // STABLE function: PostgREST runs it in a READ ONLY transaction.
  const read = () => request(client, ctx, { ...sr, readOnly: true }, async (q) =>
    (await q('SELECT hr_integration_secret($1) AS secret', [integ])).rows[0].secret);

  const before = await read();
  expect('secret', before && typeof before === 'object', 'hr_integration_secret returned no secret');
  expect('secret', Object.keys(before).sort().join() === 'api_key,api_secret,refresh_token',
    `unexpected keys ${Object.keys(before).sort().join(', ')}`);
  for (const [k, v] of Object.entries(before)) remember(`read_${k}`, v);
  ok('secret', `integration ${short(integ)}: read (${describeSecret(before)})`);

  // Rotating one part means writing the whole secret: all three keys.
  const rotated = { ...before, refresh_token: `rt_${randomBytes(24).toString('base64url')}` };
  remember('written_refresh_token', rotated.refresh_token);
  const cid = await request(client, ctx, sr, async (q) =>
    (await q('SELECT hr_set_integration_secret($1, $2) AS credential_id', [integ, JSON.stringify(rotated)]))
      .rows[0].credential_id);
  const linked = await request(client, ctx, sr, async (q) =>
    (await q('SELECT credential_id FROM public.hr_job_board_integrations WHERE id = $1', [integ])).rows[0]?.credential_id);
  expect('secret', cid && cid === linked, 'hr_set_integration_secret did not return the linked credential id');
  ok('secret', `refresh token rotated: stored in credential ${short(cid)}`);

  const after = await read();
  expect('secret', sameSecret(after, rotated), 'the secret read back differs from the one written');
  ok('secret', 'read back: equal to what was written');

  const partial = `rt_${randomBytes(24).toString('base64url')}`;
  remember('refused_refresh_token', partial);
  const e = await refused('secret', '22023', request(client, ctx, sr, (q) =>
    q('SELECT hr_set_integration_secret($1, $2)', [integ, JSON.stringify({ refresh_token: partial })])));
  expect('secret', !errorText(e).includes(partial), 'the error of a partial secret echoes its value');
  ok('secret', 'a partial secret (refresh_token only): 22023, value not echoed');
}

async function sessions(client, ctx, { candidate, orgA, orgB }) {
  const tenant = (org) => ({ role: 'authenticated', claims: { sub: randomBytes(16).toString('hex'), role: 'authenticated', organization_id: org } });
  // Supabase puts server-controlled claims in app_metadata; both forms are read.
  const tenantViaAppMetadata = (org) => ({ role: 'authenticated', claims: { role: 'authenticated', app_metadata: { organization_id: org } } });
  const insert = (as, orgId) => request(client, ctx, as, async (q) => (orgId === undefined
    ? await q(`INSERT INTO public.hr_candidate_portal_sessions (candidate_id, expires_at)
               VALUES ($1, now() + interval '1 hour') RETURNING id, organization_id`, [candidate])
    : await q(`INSERT INTO public.hr_candidate_portal_sessions (candidate_id, organization_id, expires_at)
               VALUES ($1, $2, now() + interval '1 hour') RETURNING id, organization_id`, [candidate, orgId])).rows[0]);

  const s1 = await insert(tenant(orgA));
  expect('session', s1.organization_id === orgA, `organization_id should be derived as ${orgA}, got ${s1.organization_id}`);
  ok('session', `created without organization_id: derived ${short(orgA)} from the candidate`);
  const s2 = await insert(tenant(orgA), orgA);
  expect('session', s2.organization_id === orgA, `organization_id should stay ${orgA}, got ${s2.organization_id}`);
  ok('session', 'created with the matching organization_id: accepted');
  await refused('session', '23514', insert(tenant(orgA), orgB));
  ok('session', 'created with another organization_id: 23514');
  await refused('session', '42501', insert(tenant(orgB)));
  ok('session', "another tenant's JWT for this candidate: 42501 (RLS WITH CHECK)");

  const ids = [s1.id, s2.id];
  const visible = (as) => request(client, ctx, as, async (q) =>
    (await q('SELECT count(*)::int AS n FROM public.hr_candidate_portal_sessions WHERE id = ANY($1::uuid[])', [ids])).rows[0].n);
  let n = await visible(tenant(orgA));
  expect('rls', n === 2, `tenant ${orgA} should see its 2 sessions, saw ${n}`);
  n = await visible(tenantViaAppMetadata(orgA));
  expect('rls', n === 2, `tenant ${orgA} (app_metadata claim) should see its 2 sessions, saw ${n}`);
  ok('rls', `tenant ${short(orgA)} sees its 2 sessions (top-level and app_metadata claim)`);
  n = await visible(tenant(orgB));
  expect('rls', n === 0, `tenant ${orgB} should see none of them, saw ${n}`);
  n = await visible({ role: 'authenticated', claims: { role: 'authenticated' } });
  expect('rls', n === 0, `a JWT without organization should see none of them, saw ${n}`);
  ok('rls', `tenant ${short(orgB)} and a JWT without organization see none`);

  const deleted = await request(client, ctx, tenant(orgA), async (q) =>
    (await q('DELETE FROM public.hr_candidate_portal_sessions WHERE id = ANY($1::uuid[])', [ids])).rowCount);
  expect('session', deleted === 2, `tenant ${orgA} should delete its 2 sessions, deleted ${deleted}`);
  ok('session', 'deleted by their tenant');
}

async function main() {
  const client = new pg.Client({
    host: process.env.PGHOST || '127.0.0.1',
    user: process.env.PGUSER || 'authenticator',
    database: process.env.PGDATABASE || 'postgres',
    application_name: 'hr-edge-function-example',
    connectionTimeoutMillis: 10_000,
    statement_timeout: 15_000,
    query_timeout: 20_000,
  });
  await client.connect();
  try {
    const who = (await client.query(`SELECT current_user AS login, quote_ident(n.nspname) AS schema
                                       FROM pg_catalog.pg_extension e
                                       JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                                      WHERE e.extname = 'hr_migrations'`)).rows[0];
    expect('setup', who, 'the hr_migrations extension is not installed in this database');
    // PostgREST's search_path: the exposed schema, then db-extra-search-path.
    const ctx = { searchPath: who.schema === 'public' ? 'public' : `public, ${who.schema}` };
    ok('connect', `as ${who.login}; extension in ${who.schema}; search_path ${ctx.searchPath}`);
    stage = 'setup';
    const ids = await discover(client, ctx);
    stage = 'reference tokens';
    await tokens(client, ctx, ids.ref);
    stage = 'integration secrets';
    await secrets(client, ctx, ids.integ);
    stage = 'portal sessions';
    await sessions(client, ctx, ids);
  } finally {
    await client.end().catch(() => {});
  }
}

const watchdog = setTimeout(() => {
  writeSecretsFile();
  console.error(`FAIL: timed out after ${TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TIMEOUT_MS);
watchdog.unref();

try {
  await main();
  writeSecretsFile();
  console.log('all checks passed');
} catch (e) {
  writeSecretsFile();
  if (e instanceof Mismatch) {
    console.error(`FAIL: ${e.message}`);
  } else if (e instanceof pg.DatabaseError) {
    // Errors of these functions never quote a token or secret.
    console.error(`FAIL: ${stage}: unexpected SQLSTATE ${e.code}: ${e.message}`);
  } else {
    console.error(`FAIL: ${stage}: ${e.message}`);
  }
  process.exitCode = 1;
}
