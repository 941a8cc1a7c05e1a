#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// otlppub.js: publish OTLP trace batches on NATS for the `wirespan tail` and
// `wirespan relay` tests. The batches are encoded here with protobufjs from
// wirespan's .proto files (agent/export/), an encoder independent of the
// agent's protobuf-c one, and published with nats.js (npm `nats`).
//
//   node otlppub.js --url URL [--stream NAME] SPEC.json
//
// --stream NAME: create stream NAME on otel.traces.> (if missing) and publish
// with JetStream (each publish acked by the stream).
//
// SPEC: {"messages": [M, ...]} where each M is one NATS message:
//   {"subject": S, "resource": {attr: value, ...},
//    "spans": [{"trace_id": hex32, "span_id": hex16, "parent_span_id": hex16,
//               "name": s, "kind": 0-5, "start": ns, "end": ns,
//               "attributes": {k: v}, "status": {"code": 0-2, "message": s}}]}
//   or {"subject": S, "raw_hex": hex}   (any bytes, e.g. garbage)
// Attribute values: string, boolean, integer (int_value), other numbers
// (double_value). ns may be a number or a decimal string.
// Prints {"ok":true,"published":N,"bytes":[...]} (the size of each message).
"use strict";

const fs = require("fs");
const path = require("path");
const protobuf = require("protobufjs");
const { connect } = require("nats");

const PROTO_DIR = path.join(__dirname, "..", "..", "..", "agent", "export");

function anyValue(v) {
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Number.isInteger(v)) return { intValue: v };
  if (typeof v === "number") return { doubleValue: v };
  throw new Error(`unsupported attribute value ${JSON.stringify(v)}`);
}

function attrs(o) {
  return Object.entries(o || {}).map(([key, v]) => ({ key, value: anyValue(v) }));
}

function span(s) {
  const out = {
    traceId: Buffer.from(s.trace_id, "hex"),
    spanId: Buffer.from(s.span_id, "hex"),
    name: s.name,
    kind: s.kind || 0,
    startTimeUnixNano: String(s.start),
    endTimeUnixNano: String(s.end),
    attributes: attrs(s.attributes),
  };
  if (s.parent_span_id) out.parentSpanId = Buffer.from(s.parent_span_id, "hex");
  if (s.status) out.status = { code: s.status.code || 0, message: s.status.message || "" };
  return out;
}

async function main(argv) {
  let url = "nats://127.0.0.1:4222";
  let file = null;
  let stream = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--url" && i + 1 < argv.length) url = argv[++i];
    else if (argv[i] === "--stream" && i + 1 < argv.length) stream = argv[++i];
    else if (file === null) file = argv[i];
    else throw new Error(`unexpected argument ${argv[i]}`);
  }
  if (!file) throw new Error("usage: otlppub.js --url URL SPEC.json");
  const spec = JSON.parse(fs.readFileSync(file, "utf8"));
  const files = fs.readdirSync(PROTO_DIR).filter((f) => f.endsWith(".proto"))
    .map((f) => path.join(PROTO_DIR, f));
  const root = new protobuf.Root().loadSync(files);
  root.resolveAll();
  const Req = root.lookupType("opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest");

  const nc = await connect({ servers: url, name: "otlppub" });
  let js = null;
  if (stream) {
    const jsm = await nc.jetstreamManager();
    try {
      await jsm.streams.info(stream);
    } catch (e) {
      await jsm.streams.add({ name: stream, subjects: ["otel.traces.>"] });
    }
    js = nc.jetstream();
  }
  const sizes = [];
  for (const m of spec.messages) {
    let bytes;
    if (m.raw_hex !== undefined) {
      bytes = Buffer.from(m.raw_hex, "hex");
    } else {
      const req = {
        resourceSpans: [{
          resource: { attributes: attrs(m.resource) },
          scopeSpans: [{ scope: { name: "otlppub", version: "1" }, spans: m.spans.map(span) }],
        }],
      };
      const msg = Req.fromObject(req);
      const err = Req.verify(msg);
      if (err) throw new Error(err);
      bytes = Req.encode(msg).finish();
    }
    if (js) await js.publish(m.subject, bytes);
    else nc.publish(m.subject, bytes);
    sizes.push(bytes.length);
  }
  await nc.flush();
  await nc.close();
  process.stdout.write(JSON.stringify({ ok: true, published: sizes.length, bytes: sizes }) + "\n");
}

main(process.argv.slice(2)).catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.stack || e) }) + "\n");
  process.exit(1);
});
