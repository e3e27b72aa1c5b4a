// What the platform objects of a proxied request cost on the local workerd: the JavaScript
// pass-through of benches/workers/platform/steps.mjs with each of its steps, and all of them,
// each in its own workerd, measured at CONCURRENCY connections (default 8), rounds interleaved.
// Reports requests per second and the workerd process's CPU time per request, and each
// variant's CPU over the plain pass-through's.
// Usage: [VARIANTS=-,r,a,t,w,x,l,ratw] [ROUNDS=5] [SECONDS=3] [CONCURRENCY=8] node benches/workers/platform-costs.mjs
// Loopback only; bounded by ROUNDS x SECONDS per variant. Results: target/bench/platform-costs.md.
import fs from "node:fs";
import path from "node:path";
import { root, startUpstream, startWorker, stepsWorkerOptions, request, measureLoad } from "./common.mjs";

const VARIANTS = (process.env.VARIANTS ?? "-,r,a,t,w,x,l,ratw").split(",");
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const SECONDS = Number(process.env.SECONDS ?? 3);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 8);

const upstream = await startUpstream();
const workers = {};
for (const v of VARIANTS) {
  workers[v] = await startWorker(stepsWorkerOptions(v));
}
const target = (w) => ({ ...w, path: "/items/42", headers: { "cf-connecting-ip": "198.51.100.7" } });
const rounds = {};
try {
  for (const w of Object.values(workers)) for (let i = 0; i < 300; i++) await request(undefined, target(w));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [v, w] of Object.entries(workers)) {
      (rounds[v] ??= []).push(await measureLoad(target(w), CONCURRENCY, { seconds: SECONDS, maxRequests: 30000 }));
    }
  }
} finally {
  for (const w of Object.values(workers)) await w.mf.dispose();
  upstream.close();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const plain = median((rounds["-"] ?? rounds[VARIANTS[0]]).map((r) => r.cpuUs));
let md = `| steps | req/s | workerd CPU µs/request | over the plain pass-through |\n|---|---|---|---|\n`;
for (const [v, rs] of Object.entries(rounds)) {
  const cpu = median(rs.map((r) => r.cpuUs));
  md += `| ${v} | ${median(rs.map((r) => r.rps)).toFixed(0)} | ${cpu.toFixed(0)} | ${(cpu - plain).toFixed(0)} |\n`;
}
md += `\n${ROUNDS} rounds of ${SECONDS} s at ${CONCURRENCY} connections, interleaved; medians. Steps: benches/workers/platform/steps.mjs.\n`;
fs.mkdirSync(path.join(root, "target/bench"), { recursive: true });
fs.writeFileSync(path.join(root, "target/bench/platform-costs.md"), md);
console.log(md);
