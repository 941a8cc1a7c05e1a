#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// natsrole.js: nats.js (npm `nats`) test peer for the `wirespan agent`
// integration tests. One process plays one role:
//   --mode pub    publish --count messages to --subject (--traceparent: a W3C
//                 traceparent header per message; --header K:V)
//   --mode sub    subscribe to --subject (--queue Q), print a ready line,
//                 receive --count messages (or until --stop-file exists)
//   --mode reply  answer requests on --subject until --count were served
//                 (or --stop-file exists)
//   --mode req    --count requests to --subject (nats.js muxed inbox)
//   --forward-to S  (sub) publish every message received to S, from the
//                 message handler
//   --linger MS   stay connected MS milliseconds before closing
// Payload byte j of message k is (k*131 + j) & 0xff, as in every peer.
// Prints {"ready":true,...} once subscribed (sub, reply), then one JSON line.
//
// Dependencies: `npm ci --prefix tests` (tests/package.json).
"use strict";

const fs = require("fs");
const { connect, headers } = require("nats");

function parseArgs(argv) {
  const o = {
    url: "nats://127.0.0.1:4222", mode: "", subject: "wirespan.agent", queue: "",
    count: 10, size: 64, stopFile: "", timeout: 20000, traceparent: false,
    header: "", name: "wirespan-role-node", linger: 0, forwardTo: "",
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case "--url": o.url = next(); break;
      case "--mode": o.mode = next(); break;
      case "--subject": o.subject = next(); break;
      case "--queue": o.queue = next(); break;
      case "--count": o.count = parseInt(next(), 10); break;
      case "--size": o.size = parseInt(next(), 10); break;
      case "--stop-file": o.stopFile = next(); break;
      case "--timeout": o.timeout = parseInt(next(), 10); break;
      case "--traceparent": o.traceparent = true; break;
      case "--header": o.header = next(); break;
      case "--name": o.name = next(); break;
      case "--linger": o.linger = parseInt(next(), 10); break;
      case "--forward-to": o.forwardTo = next(); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  return o;
}

function payload(k, size) {
  const p = new Uint8Array(size);
  for (let j = 0; j < size; j++) p[j] = (k * 131 + j) & 0xff;
  return p;
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
const hex = (v, n) => v.toString(16).padStart(n, "0");

async function main(o, r) {
  const nc = await connect({ servers: o.url, name: o.name, timeout: o.timeout, reconnect: false });
  r.client_id = nc.info ? nc.info.client_id : 0;
  const deadline = Date.now() + o.timeout;
  const stopped = () => o.stopFile && fs.existsSync(o.stopFile);
  try {
    if (o.mode === "pub") {
      for (let k = 0; k < o.count; k++) {
        let h;
        if (o.traceparent || o.header) {
          h = headers();
          if (o.header) {
            const i = o.header.indexOf(":");
            h.set(o.header.slice(0, i), o.header.slice(i + 1).trim());
          }
          if (o.traceparent) {
            const tp = `00-${hex(0x7ace0000 + k + 1, 32)}-${hex(0x5a4e0000 + k + 1, 16)}-01`;
            h.set("traceparent", tp);
            r.traceparents.push(tp);
          }
        }
        nc.publish(o.subject, payload(k, o.size), h ? { headers: h } : undefined);
        r.published++;
      }
    } else if (o.mode === "sub" || o.mode === "reply") {
      const opts = o.queue ? { queue: o.queue } : {};
      r.match = true;
      const sub = nc.subscribe(o.subject, opts);
      await nc.flush();
      process.stdout.write(JSON.stringify({ ready: true, pid: process.pid }) + "\n");
      let done = false;
      const loop = (async () => {
        for await (const m of sub) {
          if (o.mode === "reply") {
            const out = new Uint8Array(6 + m.data.length);
            out.set(Buffer.from("reply:"), 0);
            out.set(m.data, 6);
            m.respond(out);
            r.served++;
            if (r.served >= o.count) break;
          } else {
            r.received++;
            if (o.forwardTo) {
              // published from the handler, on the thread that read the message
              nc.publish(o.forwardTo, m.data);
              r.published++;
            }
            if (m.data.length !== o.size) r.match = false;
            if (r.received >= o.count) break;
          }
        }
        done = true;
      })();
      while (!done && Date.now() < deadline && !stopped()) await sleep(20);
      if (!done) sub.unsubscribe();
      await loop;
      const n = o.mode === "reply" ? r.served : r.received;
      if (!o.stopFile && n < o.count) throw new Error(`${o.mode}: ${n} of ${o.count}`);
    } else if (o.mode === "req") {
      r.match = true;
      for (let k = 0; k < o.count; k++) {
        const p = payload(k, o.size);
        r.requests++;
        const m = await nc.request(o.subject, p, { timeout: 10000 });
        r.replies++;
        const want = Buffer.concat([Buffer.from("reply:"), Buffer.from(p)]);
        if (Buffer.compare(Buffer.from(m.data), want) !== 0) r.match = false;
      }
      if (!r.match) throw new Error("bad reply");
    } else {
      throw new Error(`unknown --mode ${o.mode}`);
    }
    await nc.flush();
    if (o.linger > 0) await sleep(o.linger);
  } finally {
    await nc.close();
  }
  r.ok = true;
}

let o;
try {
  o = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
}
const r = {
  peer: "node", mode: o.mode, pid: process.pid, subject: o.subject, count: o.count,
  published: 0, received: 0, served: 0, requests: 0, replies: 0, match: false,
  traceparents: [], client_id: 0, ok: false,
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
