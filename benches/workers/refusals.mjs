// How long a 429 takes when the Durable Object answers it and when the isolate answers it from
// a remembered refusal (docs/workers.md: "A key over its limit is refused without a Durable
// Object call"). On one local workerd, against a build of tests/e2e/gateway.toml (route
// /limited: 50 per hour per client address): for each of CLIENTS addresses, 50 admitted
// requests, then the 51st (refused by the object, which sends its state) and the 52nd (refused
// in the isolate), timed in pairs so the machine's drift falls on both alike. Loopback only,
// bounded by CLIENTS.
// Usage: [CLIENTS=100] node benches/workers/refusals.mjs BUILD_DIR   (e.g. adapters/workers/build-e2e)
import { Miniflare } from "miniflare";
import http from "node:http";
import { workerOptions } from "../../tests/e2e/workers/options.mjs";

const [buildDir] = process.argv.slice(2);
if (!buildDir) {
  console.error("usage: node benches/workers/refusals.mjs BUILD_DIR");
  process.exit(2);
}
const CLIENTS = Number(process.env.CLIENTS ?? 100);
const mf = new Miniflare({ ...workerOptions(buildDir), handleStructuredLogs() {} });
const port = Number(new URL(await mf.ready).port);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function once(ip) {
  return new Promise((ok, fail) => {
    const start = process.hrtime.bigint();
    const req = http.request({ host: "127.0.0.1", port, path: "/limited", agent, headers: { "cf-connecting-ip": ip } }, (res) => {
      res.resume();
      res.on("end", () => ok({ status: res.statusCode, ms: Number(process.hrtime.bigint() - start) / 1e6 }));
    });
    req.on("error", fail);
    req.end();
  });
}

const byObject = [];
const byIsolate = [];
try {
  for (let i = 0; i < CLIENTS; i++) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    for (let n = 0; n < 50; n++) await once(ip);
    const fromObject = await once(ip);
    const fromIsolate = await once(ip);
    if (fromObject.status !== 429 || fromIsolate.status !== 429) {
      throw new Error(`client ${ip}: the 51st and 52nd requests got ${fromObject.status} and ${fromIsolate.status}`);
    }
    byObject.push(fromObject.ms);
    byIsolate.push(fromIsolate.ms);
  }
} finally {
  agent.destroy();
  await mf.dispose();
}
const p = (xs, q) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))];
for (const [name, xs] of [["refused by the object", byObject], ["refused in the isolate", byIsolate]]) {
  console.log(`${name}: p50 ${p(xs, 0.5).toFixed(3)} ms, p99 ${p(xs, 0.99).toFixed(3)} ms (${xs.length} requests)`);
}
console.log(`p50 ratio (isolate / object): ${(p(byIsolate, 0.5) / p(byObject, 0.5)).toFixed(2)}`);
