#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// natsclient.js: deterministic nats.js (npm `nats`) test peer for the wirespan
// integration tests. Connects, subscribes to SUBJECT and SUBJECT.req (a
// responder), publishes COUNT messages of SIZE bytes, flushes, receives them
// back, makes one request to SUBJECT.req and prints one JSON line.
// Payload byte j of message k is (k*131 + j) & 0xff, as in every peer.
//
// Dependencies: `npm ci --prefix tests` (tests/package.json).
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const { connect, headers } = require("nats");

function parseArgs(argv) {
  const o = {
    url: "nats://127.0.0.1:4222",
    count: 10,
    size: 128,
    subject: "wirespan.test",
    holdFile: "",
    holdTimeout: 60000,
    timeout: 20000,
    headers: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case "--url": o.url = next(); break;
      case "--count": o.count = parseInt(next(), 10); break;
      case "--size": o.size = parseInt(next(), 10); break;
      case "--subject": o.subject = next(); break;
      case "--hold-file": o.holdFile = next(); break;
      case "--hold-timeout": o.holdTimeout = parseInt(next(), 10); break;
      case "--timeout": o.timeout = parseInt(next(), 10); break;
      case "--headers": o.headers = true; break;
      default:
        if (a.startsWith("--")) throw new Error(`unknown flag ${a}`);
        o.url = a;
    }
  }
  return o;
}

function payload(k, size) {
  const p = new Uint8Array(size);
  for (let j = 0; j < size; j++) p[j] = (k * 131 + j) & 0xff;
  return p;
}

const sha = (b) => crypto.createHash("sha256").update(b).digest("hex");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFile(path, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!fs.existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`hold file ${path} did not appear`);
    await sleep(20);
  }
}

function withTimeout(promise, ms, what) {
  let t;
  const timer = new Promise((_, rej) => {
    t = setTimeout(() => rej(new Error(`${what}: timeout after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timer]).finally(() => clearTimeout(t));
}

async function main(o, r) {
  const nc = await connect({
    servers: o.url,
    name: "wirespan-peer-node",
    timeout: o.timeout,
    reconnect: false,
  });
  try {
    if (o.holdFile) {
      process.stderr.write(`connected; holding until ${o.holdFile} exists\n`);
      const t0 = Date.now();
      await waitFile(o.holdFile, o.holdTimeout);
      r.held_ms = Date.now() - t0;
    }
    const sub = nc.subscribe(o.subject, { max: o.count });
    nc.subscribe(r.request_subject, {
      callback: (err, m) => {
        if (err) return;
        const out = new Uint8Array(6 + m.data.length);
        out.set(Buffer.from("reply:"), 0);
        out.set(m.data, 6);
        m.respond(out);
      },
    });
    await withTimeout(nc.flush(), o.timeout, "flush");

    const ph = crypto.createHash("sha256");
    for (let k = 0; k < o.count; k++) {
      const p = payload(k, o.size);
      ph.update(p);
      if (o.headers) {
        const h = headers();
        const id = (k + 1).toString(16);
        h.set("traceparent", `00-${id.padStart(32, "0")}-${id.padStart(16, "0")}-01`);
        nc.publish(o.subject, p, { headers: h });
      } else {
        nc.publish(o.subject, p);
      }
      r.published++;
    }
    r.pub_sha256 = ph.digest("hex");
    await withTimeout(nc.flush(), o.timeout, "flush");

    const rh = crypto.createHash("sha256");
    r.match = true;
    const recv = (async () => {
      let k = 0;
      for await (const m of sub) {
        rh.update(m.data);
        if (Buffer.compare(Buffer.from(m.data), Buffer.from(payload(k, o.size))) !== 0) r.match = false;
        r.received++;
        k++;
        if (k >= o.count) break;
      }
    })();
    if (o.count > 0) await withTimeout(recv, o.timeout, "receive");
    r.recv_sha256 = rh.digest("hex");

    const req = Buffer.from(`request:${o.subject}`);
    r.request_sha256 = sha(req);
    const reply = await nc.request(r.request_subject, req, { timeout: o.timeout });
    r.reply_sha256 = sha(reply.data);
    r.reply_ok = Buffer.compare(Buffer.from(reply.data), Buffer.concat([Buffer.from("reply:"), req])) === 0;
    await withTimeout(nc.flush(), o.timeout, "final flush");
  } finally {
    await nc.close();
  }
  r.ok = r.match && r.reply_ok && r.published === o.count && r.received === o.count;
  if (!r.ok) r.error = "payload mismatch or bad reply";
}

let o;
try {
  o = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
}
const r = {
  peer: "node", pid: process.pid, url: o.url, subject: o.subject, count: o.count,
  size: o.size, headers: o.headers, published: 0, received: 0, pub_sha256: "",
  recv_sha256: "", match: false, request_subject: `${o.subject}.req`,
  request_sha256: "", reply_sha256: "", reply_ok: false, held_ms: 0, ok: false,
};
main(o, r)
  .catch((e) => {
    r.ok = false;
    r.error = String(e && e.message ? e.message : e);
  })
  .finally(() => {
    process.stdout.write(JSON.stringify(r) + "\n");
    process.exitCode = r.ok ? 0 : 1;
  });
