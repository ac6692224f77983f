#!/usr/bin/env node
// Cross-check for src/usersig.rs against the official npm package tls-sig-api-v2 (1.0.2).
//
//   node crosscheck.js gen <sdkappid> <key> <identifier> <expire> <now_ms>
//       prints the official package's UserSig, with Date.now() fixed to now_ms.
//   node crosscheck.js verify <usersig> <sdkappid> <key> <identifier>
//       recomputes the HMAC with node's own crypto and zlib (not the package) and prints "ok",
//       or prints a reason on stderr and exits 1. Expiry is not checked.
'use strict';

const crypto = require('crypto');
const zlib = require('zlib');

function fail(reason) {
  process.stderr.write(`${reason}\n`);
  process.exit(1);
}

function gen([sdkappid, key, identifier, expire, nowMs]) {
  const now = Number(nowMs);
  if (!Number.isFinite(now)) fail(`bad now_ms: ${nowMs}`);
  Date.now = () => now;
  const { Api } = require('tls-sig-api-v2');
  const api = new Api(Number(sdkappid), key);
  process.stdout.write(`${api.genUserSig(identifier, Number(expire))}\n`);
}

function verify([usersig, sdkappid, key, identifier]) {
  const b64 = usersig.replace(/\*/g, '+').replace(/-/g, '/').replace(/_/g, '=');
  let doc;
  try {
    doc = JSON.parse(zlib.inflateSync(Buffer.from(b64, 'base64')).toString('utf8'));
  } catch (e) {
    fail(`cannot decode usersig: ${e.message}`);
  }
  for (const field of ['TLS.ver', 'TLS.identifier', 'TLS.sdkappid', 'TLS.time', 'TLS.expire', 'TLS.sig']) {
    if (!(field in doc)) fail(`missing ${field}`);
  }
  if (Number(doc['TLS.sdkappid']) !== Number(sdkappid)) fail('sdkappid mismatch');
  if (String(doc['TLS.identifier']) !== identifier) fail('identifier mismatch');
  let text = `TLS.identifier:${doc['TLS.identifier']}\n` +
    `TLS.sdkappid:${doc['TLS.sdkappid']}\n` +
    `TLS.time:${doc['TLS.time']}\n` +
    `TLS.expire:${doc['TLS.expire']}\n`;
  if (doc['TLS.userbuf'] != null) text += `TLS.userbuf:${doc['TLS.userbuf']}\n`;
  const want = crypto.createHmac('sha256', Buffer.from(key, 'utf8')).update(text, 'utf8').digest();
  const got = Buffer.from(String(doc['TLS.sig']), 'base64');
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) fail('signature mismatch');
  process.stdout.write('ok\n');
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'gen' && args.length === 5) {
  gen(args);
} else if (cmd === 'verify' && args.length === 4) {
  verify(args);
} else {
  process.stderr.write('usage: crosscheck.js gen <sdkappid> <key> <identifier> <expire> <now_ms>\n' +
    '       crosscheck.js verify <usersig> <sdkappid> <key> <identifier>\n');
  process.exit(2);
}
