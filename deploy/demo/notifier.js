#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// The notifier of `make demo`: a nats.js (npm `nats`) subscriber of the
// demo.priced events the pricing worker publishes. Nothing in it knows
// about tracing. usage: node notifier.js [nats://127.0.0.1:4222]
"use strict";

const { connect, StringCodec } = require("nats");

async function main() {
  const url = process.argv[2] || "nats://127.0.0.1:4222";
  const nc = await connect({ servers: url, name: "demo-notifier" });
  const sc = StringCodec();
  const sub = nc.subscribe("demo.priced");
  await nc.flush();
  console.error(`demo-notifier: listening on demo.priced at ${url}`);
  const stop = () => nc.drain().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  for await (const m of sub) {
    console.error(`demo-notifier: ${sc.decode(m.data)}`);
  }
}

main().catch((e) => {
  console.error(`demo-notifier: ${e.message}`);
  process.exit(1);
});
