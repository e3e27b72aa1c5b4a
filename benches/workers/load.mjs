// The Workers load benchmark: on the local workerd (Miniflare), in one run, measures
// p50/p99 latency and throughput of (1) the upstream direct, (2) a pass-through Rust worker,
// (3) Portcullis with benches/gateway.toml (JWT + deny list + rate limit + transforms), and
// (4) the same stack without the rate limit, which shows what the Durable Object call costs, and
// (5) Portcullis again with the Durable Object's storage on tmpfs (/dev/shm): Miniflare keeps it in
// a temporary directory on disk by default, and the local workerd syncs each SQLite commit to that
// disk before the object answers, which on this VM's disk is most of the object's cost.
// Loopback only, bounded: ROUNDS rounds of SECONDS per target and concurrency. Writes
// target/bench/workers.json and prints a markdown table. Run it with scripts/bench-workers.sh.
import { Miniflare } from "miniflare";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { root, UPSTREAM_PORT, startUpstream, portcullisOptions, passthroughOptions, benchToken, request, measureLoad } from "./common.mjs";

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 5);
const MAX_REQUESTS = 20000; // per measurement, whichever comes first

const upstream = await startUpstream();
// Each worker gets its own Miniflare (the same workerd binary, the same settings): with both in
// one Miniflare, requests into the Durable Object hung in this Miniflare version.
const build = process.env.PORTCULLIS_BUILD ?? "build-bench";
const mfPortcullis = new Miniflare(portcullisOptions(build));
// the same build, its Durable Object storage in a fresh directory on tmpfs (removed at the end)
const shm = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
const doDir = fs.mkdtempSync(path.join(shm, "portcullis-bench-do-"));
const mfTmpfs = new Miniflare({ ...portcullisOptions(build), durableObjectsPersist: doDir });
const mfPass = new Miniflare(passthroughOptions());
const portcullisUrl = new URL(await mfPortcullis.ready);
const tmpfsUrl = new URL(await mfTmpfs.ready);
const passUrl = new URL(await mfPass.ready);
const token = benchToken();
// what every request to Portcullis carries: the bench provider's token and a client address
const gatewayHeaders = { authorization: `Bearer ${token}`, "cf-connecting-ip": "198.51.100.7" };

const targets = {
  upstream: { port: UPSTREAM_PORT, headers: {} },
  passthrough: { port: Number(passUrl.port), headers: {} },
  portcullis: {
    port: Number(portcullisUrl.port),
    headers: gatewayHeaders,
  },
  "portcullis-no-rate-limit": {
    port: Number(portcullisUrl.port),
    path: "/unlimited/42",
    headers: gatewayHeaders,
  },
  "portcullis-do-on-tmpfs": {
    port: Number(tmpfsUrl.port),
    headers: gatewayHeaders,
  },
};

const once = (agent, t) => request(agent, t, "/items/42");
const measure = (t, concurrency) => measureLoad(t, concurrency, { seconds: SECONDS, maxRequests: MAX_REQUESTS, path: "/items/42" });

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = {};
try {
  for (const name of Object.keys(targets)) for (let i = 0; i < 200; i++) await once(undefined, targets[name]); // warm up
  for (const concurrency of [1, 8]) {
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, t] of Object.entries(targets)) {
        const r = await measure(t, concurrency);
        ((results[concurrency] ??= {})[name] ??= []).push(r);
        console.error(`c=${concurrency} round ${round + 1} ${name}: p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms, ${r.rps.toFixed(0)} req/s`);
      }
    }
  }
} finally {
  await mfPortcullis.dispose();
  await mfTmpfs.dispose();
  await mfPass.dispose();
  fs.rmSync(doDir, { recursive: true, force: true });
  upstream.close();
}

const wasm = (dir) => {
  const bytes = fs.readFileSync(path.join(root, dir, "index_bg.wasm"));
  return { raw: bytes.length, gzip: zlib.gzipSync(bytes, { level: 9 }).length };
};
const summary = { rounds: ROUNDS, seconds: SECONDS, when: new Date().toISOString(), sizes: {
  portcullis: wasm(path.join("adapters/workers", build)), passthrough: wasm("benches/passthrough-worker/build"),
}, results: {} };
let table = "| concurrency | target | p50 ms | p99 ms | req/s |\n|---|---|---|---|---|\n";
for (const [c, byName] of Object.entries(results)) {
  for (const [name, rounds] of Object.entries(byName)) {
    const m = { p50: median(rounds.map((r) => r.p50)), p99: median(rounds.map((r) => r.p99)), rps: median(rounds.map((r) => r.rps)) };
    (summary.results[c] ??= {})[name] = { median: m, rounds };
    table += `| ${c} | ${name} | ${m.p50.toFixed(3)} | ${m.p99.toFixed(3)} | ${m.rps.toFixed(0)} |\n`;
  }
  const pass = summary.results[c].passthrough.median.p50;
  const added = summary.results[c].portcullis.median.p50 - pass;
  table += `| ${c} | portcullis − passthrough (p50) | ${added.toFixed(3)} | | |\n`;
  const addedTmpfs = summary.results[c]["portcullis-do-on-tmpfs"].median.p50 - pass;
  table += `| ${c} | portcullis-do-on-tmpfs − passthrough (p50) | ${addedTmpfs.toFixed(3)} | | |\n`;
  const limiter = summary.results[c].portcullis.median.p50 - summary.results[c]["portcullis-no-rate-limit"].median.p50;
  table += `| ${c} | portcullis − portcullis-no-rate-limit (p50) | ${limiter.toFixed(3)} | | |\n`;
}
fs.mkdirSync(path.join(root, "target/bench"), { recursive: true });
fs.writeFileSync(path.join(root, "target/bench/workers.json"), JSON.stringify(summary, null, 2));
fs.writeFileSync(path.join(root, "target/bench/workers.md"), table);
console.log(table);
console.log(`wasm: portcullis ${summary.sizes.portcullis.raw} B raw / ${summary.sizes.portcullis.gzip} B gzip; passthrough ${summary.sizes.passthrough.raw} / ${summary.sizes.passthrough.gzip}`);
