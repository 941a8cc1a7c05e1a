#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// Independent check of wirespan's OTLP protobuf encoder: decode a file of
// ExportTraceServiceRequest (or TracesData) bytes with protobufjs, loading
// the .proto files from agent/export/, and print it as one line of OTLP/JSON
// (camelCase names, trace/span ids as lowercase hex, 64-bit integers as
// decimal strings, enums as numbers, fields at their default omitted, empty
// repeated fields as []).
//
//   node tests/otlp/decode.js [--type TracesData] FILE|-
//
// Needs `npm ci --prefix tests` (protobufjs). Exit 0 when the bytes decode,
// 1 when they do not, 2 on usage errors.
'use strict';

const fs = require('fs');
const path = require('path');
const protobuf = require('protobufjs');

const PROTO_DIR = path.join(__dirname, '..', '..', 'agent', 'export');
const TYPES = {
  ExportTraceServiceRequest:
    'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest',
  TracesData: 'opentelemetry.proto.trace.v1.TracesData',
};
const HEX_IDS = new Set(['traceId', 'spanId', 'parentSpanId']);

function usage() {
  process.stderr.write(
    'usage: decode.js [--type ExportTraceServiceRequest|TracesData] FILE|-\n');
  process.exit(2);
}

// OTLP/JSON writes ids as hex, not base64 as proto3 JSON would.
function hexIds(v) {
  if (Array.isArray(v)) return v.map(hexIds);
  if (v === null || typeof v !== 'object') return v;
  const o = {};
  for (const [k, x] of Object.entries(v)) {
    o[k] = HEX_IDS.has(k) && typeof x === 'string'
      ? Buffer.from(x, 'base64').toString('hex') : hexIds(x);
  }
  return o;
}

function main(argv) {
  let type = 'ExportTraceServiceRequest';
  let file = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--type' && i + 1 < argv.length) type = argv[++i];
    else if (file === null) file = argv[i];
    else usage();
  }
  if (file === null || !TYPES[type]) usage();

  const files = fs.readdirSync(PROTO_DIR).filter((f) => f.endsWith('.proto'))
    .map((f) => path.join(PROTO_DIR, f));
  const root = new protobuf.Root().loadSync(files);
  root.resolveAll();
  const T = root.lookupType(TYPES[type]);

  const bytes = fs.readFileSync(file === '-' ? 0 : file);
  let msg;
  try {
    msg = T.decode(bytes);
  } catch (e) {
    process.stderr.write(`decode.js: ${file}: not a ${type}: ${e.message}\n`);
    return 1;
  }
  const err = T.verify(msg);
  if (err) {
    process.stderr.write(`decode.js: ${file}: ${err}\n`);
    return 1;
  }
  const obj = T.toObject(msg, {
    longs: String, enums: Number, bytes: String, defaults: false,
    arrays: true,
  });
  process.stdout.write(JSON.stringify(hexIds(obj)) + '\n');
  return 0;
}

process.exitCode = main(process.argv.slice(2));
