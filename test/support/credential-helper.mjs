#!/usr/bin/env node
// A docker credential helper that keeps its credentials in a JSON file, speaking the
// protocol exactly as github.com/docker/docker-credential-helpers' credentials.Serve
// does: the operation as the one argument; `get`/`erase` read the server URL on stdin,
// `store` reads {"ServerURL","Username","Secret"}; answers are JSON on stdout; errors
// are one line on stdout with exit status 1, and "credentials not found in native
// keychain" when there is nothing for the URL.
//
//   FERRY_TEST_HELPER_STORE  the JSON file ({ serverURL: { Username, Secret } })
//   FERRY_TEST_HELPER_LOG    appends one line per call: the operation and the server URL (never the secret)
//   FERRY_TEST_HELPER_FAIL   set: every call fails, echoing what it was given (secret included) on
//                            stdout and stderr — a careless helper, to prove ferry never repeats it
import { appendFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

const NOT_FOUND = 'credentials not found in native keychain';
const op = process.argv[2];
const storeFile = process.env.FERRY_TEST_HELPER_STORE;

function fail(message) {
  process.stdout.write(`${message}\n`);
  process.exit(1);
}

function load() {
  try {
    return JSON.parse(readFileSync(storeFile, 'utf8'));
  } catch (e) {
    if (e.code === 'ENOENT') return {};
    throw e;
  }
}

function save(doc) {
  writeFileSync(`${storeFile}.tmp`, JSON.stringify(doc, null, 2));
  renameSync(`${storeFile}.tmp`, storeFile);
}

const input = readFileSync(0, 'utf8');
if (!storeFile) fail('FERRY_TEST_HELPER_STORE is not set');
if (process.env.FERRY_TEST_HELPER_LOG) {
  const url = op === 'store' ? (() => { try { return JSON.parse(input).ServerURL; } catch { return '?'; } })() : input.trim();
  appendFileSync(process.env.FERRY_TEST_HELPER_LOG, `${op} ${url}\n`);
}
if (process.env.FERRY_TEST_HELPER_FAIL) {
  process.stderr.write(`keychain locked; input was ${input}\n`);
  fail(`keychain locked; input was ${input.replace(/\n/g, ' ')}`);
}

switch (op) {
  case 'get': {
    const url = input.trim();
    if (url === '') fail('no credentials server URL');
    const entry = load()[url];
    if (!entry) fail(NOT_FOUND);
    process.stdout.write(JSON.stringify({ ServerURL: url, Username: entry.Username, Secret: entry.Secret }));
    break;
  }
  case 'store': {
    let creds;
    try {
      creds = JSON.parse(input);
    } catch {
      fail('invalid credentials JSON');
    }
    if (!creds.ServerURL) fail('no credentials server URL');
    if (!creds.Username) fail('no credentials username');
    const doc = load();
    doc[creds.ServerURL] = { Username: creds.Username, Secret: creds.Secret };
    save(doc);
    break;
  }
  case 'erase': {
    const url = input.trim();
    const doc = load();
    if (!doc[url]) fail(NOT_FOUND);
    delete doc[url];
    save(doc);
    break;
  }
  case 'list': {
    const doc = load();
    process.stdout.write(JSON.stringify(Object.fromEntries(Object.entries(doc).map(([u, e]) => [u, e.Username]))));
    break;
  }
  case 'version':
    process.stdout.write('ferry-test-helper 1.0\n');
    break;
  default:
    fail(`Usage: docker-credential-ferrytest <store|get|erase|list|version>`);
}
