// Compares builds of the Workers adapter on one local workerd, rounds interleaved so the
// machine's slow and fast phases fall on every build alike. Each build (a directory under
// adapters/workers built with PORTCULLIS_CONFIG=benches/gateway.toml) gets its own Miniflare;
// measured at CONCURRENCY connections (default 1): the pass-through worker, and per build the
// `bare` route (a proxy
// with no policy), the `static` route (answered at the gateway) and `items` (the full policy
// stack of the load benchmark, with its Durable Object call) and `unlimited` (the same stack
// without the rate limit).
// Usage: BUILDS=build-a,build-b [ROUNDS=7] [SECONDS=3] [CONCURRENCY=1] node benches/workers/ab.mjs
// Loopback only; bounded by ROUNDS x SECONDS per target. Prints p50, req/s and workerd CPU per request (medians) and each
// round's p50.
import { startUpstream, startWorker, portcullisOptions, passthroughOptions, benchToken, request, measureLoad } from "./common.mjs";

const ROUNDS = Number(process.env.ROUNDS ?? 7);
const SECONDS = Number(process.env.SECONDS ?? 3);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 1);
const builds = (process.env.BUILDS ?? "").split(",").filter(Boolean);
if (builds.length === 0) {
  console.error("usage: BUILDS=build-a,build-b node benches/workers/ab.mjs");
  process.exit(2);
}
const upstream = await startUpstream();
const gateways = [];
for (const b of builds) gateways.push(await startWorker(portcullisOptions(b)));
const pass = await startWorker(passthroughOptions());
const token = benchToken();

const client = { "cf-connecting-ip": "198.51.100.7" };
const policy = { ...client, authorization: `Bearer ${token}` };
const targets = { passthrough: { port: pass.port, pid: pass.pid, path: "/items/42", headers: client } };
for (const [i, b] of builds.entries()) {
  const { port, pid } = gateways[i];
  targets[`bare ${b}`] = { port, pid, path: "/bare/42", headers: client };
  targets[`static ${b}`] = { port, pid, path: "/static", headers: client };
  targets[`items ${b}`] = { port, pid, path: "/items/42", headers: policy };
  targets[`unlimited ${b}`] = { port, pid, path: "/unlimited/42", headers: policy };
}

const rounds = {};
try {
  for (const t of Object.values(targets)) for (let i = 0; i < 200; i++) await request(undefined, t); // warm up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, t] of Object.entries(targets)) {
      (rounds[name] ??= []).push(await measureLoad(t, CONCURRENCY, { seconds: SECONDS, maxRequests: 20000 }));
    }
  }
} finally {
  for (const w of [...gateways, pass]) await w.mf.dispose();
  upstream.close();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = median(rounds.passthrough.map((r) => r.p50));
for (const [name, rs] of Object.entries(rounds)) {
  const [m, rps, cpu] = [median(rs.map((r) => r.p50)), median(rs.map((r) => r.rps)), median(rs.map((r) => r.cpuUs ?? NaN))];
  console.log(`${name.padEnd(40)} p50 ${m.toFixed(3)} ms  ${(m / base).toFixed(2)}x passthrough  ${rps.toFixed(0)} req/s  ${cpu.toFixed(0)} µs CPU  rounds ${rs.map((r) => r.p50.toFixed(2)).join(" ")}`);
}
