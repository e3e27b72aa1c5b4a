// Compares builds of the Workers adapter on one local workerd, rounds interleaved so the
// machine's slow and fast phases fall on every build alike. Each build (a directory under
// adapters/workers built with PORTCULLIS_CONFIG=benches/gateway.toml) gets its own Miniflare;
// measured at one connection: the pass-through worker, and per build the `bare` route (a proxy
// with no policy), the `static` route (answered at the gateway) and `items` (the full policy
// stack of the load benchmark, with its Durable Object call) and `unlimited` (the same stack
// without the rate limit).
// Usage: BUILDS=build-a,build-b [ROUNDS=7] [SECONDS=3] node benches/workers/ab.mjs
// Loopback only; bounded by ROUNDS x SECONDS per target. Prints p50 medians and each round.
import { Miniflare } from "miniflare";
import http from "node:http";
import { startUpstream, portcullisOptions, passthroughOptions, benchToken } from "./common.mjs";

const ROUNDS = Number(process.env.ROUNDS ?? 7);
const SECONDS = Number(process.env.SECONDS ?? 3);
const builds = (process.env.BUILDS ?? "").split(",").filter(Boolean);
if (builds.length === 0) {
  console.error("usage: BUILDS=build-a,build-b node benches/workers/ab.mjs");
  process.exit(2);
}
const upstream = await startUpstream();
const gateways = builds.map((b) => new Miniflare(portcullisOptions(b)));
const pass = new Miniflare(passthroughOptions());
const token = benchToken();

const targets = { passthrough: { port: Number(new URL(await pass.ready).port), path: "/items/42" } };
for (const [i, b] of builds.entries()) {
  const port = Number(new URL(await gateways[i].ready).port);
  targets[`bare ${b}`] = { port, path: "/bare/42" };
  targets[`static ${b}`] = { port, path: "/static" };
  targets[`items ${b}`] = { port, path: "/items/42", headers: { authorization: `Bearer ${token}` } };
  targets[`unlimited ${b}`] = { port, path: "/unlimited/42", headers: { authorization: `Bearer ${token}` } };
}

function once(agent, t) {
  return new Promise((ok, fail) => {
    const start = process.hrtime.bigint();
    const req = http.request({ host: "127.0.0.1", port: t.port, path: t.path, agent, headers: { "cf-connecting-ip": "198.51.100.7", ...t.headers } }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? ok(Number(process.hrtime.bigint() - start) / 1e6) : fail(new Error(`${t.path}: ${res.statusCode}`))));
    });
    req.on("error", fail);
    req.end();
  });
}

async function p50(t) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const latencies = [];
  const deadline = Date.now() + SECONDS * 1000;
  while (Date.now() < deadline && latencies.length < 20000) latencies.push(await once(agent, t));
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return latencies[Math.floor(latencies.length / 2)];
}

const rounds = {};
try {
  for (const t of Object.values(targets)) for (let i = 0; i < 200; i++) await once(undefined, t); // warm up
  for (let r = 0; r < ROUNDS; r++) for (const [name, t] of Object.entries(targets)) (rounds[name] ??= []).push(await p50(t));
} finally {
  for (const mf of [...gateways, pass]) await mf.dispose();
  upstream.close();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = median(rounds.passthrough);
for (const [name, xs] of Object.entries(rounds)) {
  const m = median(xs);
  console.log(`${name.padEnd(40)} p50 ${m.toFixed(3)} ms  ${(m / base).toFixed(2)}x passthrough  rounds ${xs.map((x) => x.toFixed(2)).join(" ")}`);
}
