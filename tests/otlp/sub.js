#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// A plain NATS consumer of wirespan's telemetry for the integration tests:
// every message is decoded with protobufjs from agent/export/*.proto (an
// implementation independent of the agent's protobuf-c) and printed as one
// JSON line: subject, headers, payload size and its spans
// ({trace, id, parent, name, kind, scope, pid: the resource's process.pid,
// dest: messaging.destination.name}).
//
//   node tests/otlp/sub.js --url URL [auth] [--subject S]      core subscribe
//   node tests/otlp/sub.js --url URL [auth] --stream NAME      read a stream
//   node tests/otlp/sub.js --url URL [auth] --create-stream NAME
//                          [--subject S] [--dupe-window-ms N]  and exit
//   node tests/otlp/sub.js --url URL [auth] --publish SUBJECT  one message,
//                          printing {"published":true,"denied":BOOL,...}
//
// auth: --user U --pass P | --token T | --nkey-seed FILE | --creds FILE,
// --tls-ca FILE [--tls-cert FILE --tls-key FILE]. Core mode prints {"ready":true} once subscribed and runs
// until SIGTERM/SIGINT, then prints {"done":true,"msgs":N}. Stream mode
// prints every stored message, then {"done":true,"msgs":N}.
'use strict';

const fs = require('fs');
const path = require('path');
const protobuf = require('protobufjs');
const nats = require('nats');

const PROTO_DIR = path.join(__dirname, '..', '..', 'agent', 'export');

function args(argv) {
  const o = { subject: 'otel.traces.>', reconnectWait: 50 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    const v = argv[i + 1];
    switch (k) {
      case 'url': o.url = v; break;
      case 'user': o.user = v; break;
      case 'pass': o.pass = v; break;
      case 'token': o.token = v; break;
      case 'nkey-seed': o.nkeySeed = v; break;
      case 'creds': o.creds = v; break;
      case 'tls-ca': o.tlsCa = v; break;
      case 'tls-cert': o.tlsCert = v; break;
      case 'tls-key': o.tlsKey = v; break;
      case 'subject': o.subject = v; break;
      case 'stream': o.stream = v; break;
      case 'create-stream': o.createStream = v; break;
      case 'dupe-window-ms': o.dupeWindowMs = Number(v); break;
      case 'publish': o.publish = v; break;
      case 'reconnect-wait': o.reconnectWait = Number(v); break;
      default:
        process.stderr.write(`sub.js: unknown option ${argv[i]}\n`);
        process.exit(2);
    }
    i++;
  }
  if (!o.url) {
    process.stderr.write('sub.js: --url is required\n');
    process.exit(2);
  }
  return o;
}

function connectOpts(o) {
  const c = {
    servers: o.url, maxReconnectAttempts: -1,
    reconnectTimeWait: o.reconnectWait, name: 'wirespan-test-sub',
  };
  if (o.user) { c.user = o.user; c.pass = o.pass; }
  if (o.token) c.token = o.token;
  if (o.nkeySeed) {
    const seed = fs.readFileSync(o.nkeySeed, 'utf8').match(/SU[A-Z2-7]+/)[0];
    c.authenticator = nats.nkeyAuthenticator(new TextEncoder().encode(seed));
  }
  if (o.creds) {
    c.authenticator = nats.credsAuthenticator(fs.readFileSync(o.creds));
  }
  if (o.tlsCa) c.tls = { caFile: o.tlsCa };
  if (o.tlsCert) Object.assign(c.tls, { certFile: o.tlsCert, keyFile: o.tlsKey });
  return c;
}

function loadType() {
  const files = fs.readdirSync(PROTO_DIR).filter((f) => f.endsWith('.proto'))
    .map((f) => path.join(PROTO_DIR, f));
  const root = new protobuf.Root().loadSync(files);
  root.resolveAll();
  return root.lookupType(
    'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
}

const hex = (b) => (b && b.length ? Buffer.from(b).toString('hex') : null);

function describe(T, m) {
  const h = {};
  if (m.headers) {
    for (const [k, v] of m.headers) h[k] = v.join(',');
  }
  const out = { subject: m.subject, headers: h, size: m.data.length, t: Date.now() };
  try {
    const req = T.decode(m.data);
    out.spans = [];
    for (const rs of req.resourceSpans) {
      let pid = null;
      for (const kv of (rs.resource ? rs.resource.attributes : [])) {
        if (kv.key === 'process.pid') pid = Number(kv.value.intValue);
      }
      for (const ss of rs.scopeSpans) {
        for (const s of ss.spans) {
          const subj = s.attributes.find(
            (kv) => kv.key === 'messaging.destination.name');
          out.spans.push({
            trace: hex(s.traceId), id: hex(s.spanId),
            parent: hex(s.parentSpanId), name: s.name, kind: s.kind,
            scope: ss.scope ? ss.scope.name : null, pid,
            dest: subj ? subj.value.stringValue : null,
          });
        }
      }
    }
  } catch (e) {
    out.error = `not an ExportTraceServiceRequest: ${e.message}`;
  }
  return out;
}

const print = (o) => process.stdout.write(JSON.stringify(o) + '\n');

async function main() {
  const o = args(process.argv.slice(2));
  const nc = await nats.connect(connectOpts(o));
  if (o.createStream) {
    const jsm = await nc.jetstreamManager();
    const cfg = { name: o.createStream, subjects: [o.subject] };
    if (o.dupeWindowMs) cfg.duplicate_window = nats.nanos(o.dupeWindowMs);
    await jsm.streams.add(cfg);
    print({ created: o.createStream });
    await nc.close();
    return;
  }
  if (o.publish) {
    // a permission violation arrives asynchronously, as a status event
    const events = [];
    (async () => {
      for await (const s of nc.status()) events.push(`${s.type} ${s.data}`);
    })();
    let error = null;
    try {
      nc.publish(o.publish, new Uint8Array([1]));
      await nc.flush();
      await new Promise((r) => setTimeout(r, 300));
    } catch (e) {
      error = String(e);
    }
    const all = events.concat(error ? [error] : []);
    print({
      published: true, events: all,
      denied: all.some((e) => /permissions.violation/i.test(e)),
    });
    await nc.close().catch(() => {});
    return;
  }
  const T = loadType();
  let n = 0;
  if (o.stream) {
    const js = nc.jetstream();
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info(o.stream);
    const total = info.state.messages;
    if (total > 0) {
      const c = await js.consumers.get(o.stream); // ordered consumer
      const it = await c.consume();
      for await (const m of it) {
        const d = describe(T, m);
        d.stream_seq = m.seq;
        print(d);
        if (++n >= total) break;
      }
    }
    print({ done: true, msgs: n, stream_messages: total });
    await nc.close();
    return;
  }
  const sub = nc.subscribe(o.subject);
  await nc.flush();
  print({ ready: true });
  const stop = async () => {
    await nc.flush().catch(() => {});
    sub.unsubscribe();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  (async () => {
    for await (const s of nc.status()) {
      process.stderr.write(`sub.js: ${Date.now()} ${s.type} ${s.data || ''}\n`);
    }
  })();
  for await (const m of sub) {
    print(describe(T, m));
    n++;
  }
  print({ done: true, msgs: n });
  await nc.close();
}

main().catch((e) => {
  process.stderr.write(`sub.js: ${e.stack || e}\n`);
  process.exit(1);
});
