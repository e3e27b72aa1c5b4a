// Portcullis against Hono doing the same policy, on one local workerd (Miniflare), in one run:
// requests per second and latency at 1 and 8 connections, rounds interleaved. Targets: a
// JavaScript and a Rust pass-through worker (no policy), Hono 4 with the policy of
// benches/gateway.toml's `items` route (benches/workers/hono/app.mjs), and Portcullis with that
// config plus 10,000 deny-list CIDRs (target/bench/cidr-gateway.toml), with its exact limit (a
// Durable Object call per request) and without it (`/unlimited/42`), each also with 1% of its
// successes in the access log (Hono's stack writes none), and the JavaScript pass-through making
// the platform objects Portcullis's proxy path makes (new headers both ways, an abort controller,
// the head and idle timers), without and with an access-log line. Before measuring, each
// policy target is checked to refuse a request without a token (401) and one from a denied
// address (403), so the policy is really on.
// Loopback only, bounded: ROUNDS (default 3) x SECONDS (default 8) per target and concurrency
// (CONNECTIONS, default "1,8"),
// at most 40,000 requests per measurement. Run it with scripts/bench-hono.sh (it builds what
// this needs). Results: target/bench/workers-hono.{md,json}.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { root, startUpstream, startWorker, portcullisOptions, passthroughOptions, jsWorkerOptions, stepsWorkerOptions, benchToken, request, measureLoad } from "./common.mjs";

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 8);
const CONNECTIONS = (process.env.CONNECTIONS ?? "1,8").split(",").map(Number);
const MAX_REQUESTS = 40000;
const BUILD = process.env.PORTCULLIS_BUILD ?? "build-cidr";
// the same config logging 1% of the answers below 400 (`access_log_sample = 0.01`)
const SAMPLED = process.env.PORTCULLIS_SAMPLED_BUILD ?? "build-cidr-sampled";

// Hono bundled by wrangler's own esbuild, as `wrangler deploy` would
const honoOut = path.join(root, "target/bench/hono-worker");
fs.rmSync(honoOut, { recursive: true, force: true });
const bundled = spawnSync(
  path.join(root, "node_modules/.bin/wrangler"),
  ["deploy", "--dry-run", "--outdir", honoOut, "--config", path.join(root, "benches/workers/hono/wrangler.toml")],
  { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
);
if (bundled.status !== 0) throw new Error("wrangler could not bundle benches/workers/hono/app.mjs");
const honoScript = fs.readdirSync(honoOut).find((f) => f.endsWith(".js"));

const upstream = await startUpstream();
// one Miniflare per worker (the same workerd binary and settings), as in load.mjs; each its own
// workerd process, whose CPU time per request is reported beside the throughput
const workers = {
  js: await startWorker(jsWorkerOptions(path.join(root, "benches/workers/hono/passthrough.mjs"))),
  // the platform objects of Portcullis's proxy path made in JavaScript, with no policy at all:
  // what those behaviours cost by themselves
  floor: await startWorker(stepsWorkerOptions("ratw")),
  floorLogged: await startWorker(stepsWorkerOptions("ratwl")),
  rust: await startWorker(passthroughOptions()),
  hono: await startWorker(jsWorkerOptions(path.join(honoOut, honoScript))),
  portcullis: await startWorker(portcullisOptions(BUILD)),
  sampled: await startWorker(portcullisOptions(SAMPLED)),
};
const [port, pid] = [{}, {}];
for (const [k, w] of Object.entries(workers)) [port[k], pid[k]] = [w.port, w.pid];

const client = "198.51.100.7"; // in no deny list
const policy = { authorization: `Bearer ${benchToken()}`, "cf-connecting-ip": client };
const targets = {
  "JavaScript pass-through": { port: port.js, pid: pid.js, headers: {}, path: "/items/42" },
  "JavaScript, Portcullis's platform objects, no policy": { port: port.floor, pid: pid.floor, headers: {}, path: "/items/42" },
  "JavaScript, the same and a log line": { port: port.floorLogged, pid: pid.floorLogged, headers: {}, path: "/items/42" },
  "Rust pass-through": { port: port.rust, pid: pid.rust, headers: {}, path: "/items/42" },
  "Hono, the same policy": { port: port.hono, pid: pid.hono, headers: policy, path: "/items/42", policy: true },
  "Portcullis, exact limit": { port: port.portcullis, pid: pid.portcullis, headers: policy, path: "/items/42", policy: true },
  "Portcullis, no limit": { port: port.portcullis, pid: pid.portcullis, headers: policy, path: "/unlimited/42", policy: true },
  "Portcullis, exact limit, 1% logged": { port: port.sampled, pid: pid.sampled, headers: policy, path: "/items/42", policy: true },
  "Portcullis, no limit, 1% logged": { port: port.sampled, pid: pid.sampled, headers: policy, path: "/unlimited/42", policy: true },
};

/// The status `t` answers with `headers` instead of its own.
async function status(t, headers) {
  const res = await fetch(`http://127.0.0.1:${t.port}${t.path}`, { headers });
  await res.arrayBuffer();
  return res.status;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const cpu = (us) => (us === undefined ? "?" : us.toFixed(0));
const results = {};
try {
  for (const [name, t] of Object.entries(targets)) {
    if (!t.policy) continue;
    const noToken = await status(t, { "cf-connecting-ip": client });
    const denied = await status(t, { ...t.headers, "cf-connecting-ip": "203.0.113.9" });
    if (noToken !== 401 || denied !== 403) throw new Error(`${name}: no token ${noToken} (want 401), denied address ${denied} (want 403)`);
  }
  for (const t of Object.values(targets)) for (let i = 0; i < 200; i++) await request(undefined, t); // warm up
  for (const concurrency of CONNECTIONS) {
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, t] of Object.entries(targets)) {
        const r = await measureLoad(t, concurrency, { seconds: SECONDS, maxRequests: MAX_REQUESTS });
        ((results[concurrency] ??= {})[name] ??= []).push(r);
        console.error(`c=${concurrency} round ${round + 1} ${name}: p50 ${r.p50.toFixed(3)} ms, ${r.rps.toFixed(0)} req/s, ${cpu(r.cpuUs)} µs CPU`);
      }
    }
  }
} finally {
  for (const w of Object.values(workers)) await w.mf.dispose();
  upstream.close();
}

const summary = { rounds: ROUNDS, seconds: SECONDS, when: new Date().toISOString(), hono: JSON.parse(fs.readFileSync(path.join(root, "node_modules/hono/package.json"), "utf8")).version, results: {} };
let md = "| connections | target | req/s | vs Hono | workerd CPU µs/request | vs Hono | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|\n";
for (const [c, byName] of Object.entries(results)) {
  const m = Object.fromEntries(Object.entries(byName).map(([name, rounds]) => [name, {
    rps: median(rounds.map((r) => r.rps)), cpuUs: median(rounds.map((r) => r.cpuUs ?? NaN)), p50: median(rounds.map((r) => r.p50)), p99: median(rounds.map((r) => r.p99)), rounds,
  }]));
  summary.results[c] = m;
  const hono = m["Hono, the same policy"];
  for (const [name, r] of Object.entries(m)) {
    md += `| ${c} | ${name} | ${r.rps.toFixed(0)} | ${(r.rps / hono.rps).toFixed(2)}× | ${cpu(r.cpuUs)} | ${(r.cpuUs / hono.cpuUs).toFixed(2)}× | ${r.p50.toFixed(3)} | ${r.p99.toFixed(3)} |\n`;
  }
}
md += `\nHono ${summary.hono}; ${ROUNDS} rounds of ${SECONDS} s per target and concurrency, interleaved; medians of the rounds. CPU: the target's workerd process (all threads, user and system) per request.\n`;
const out = path.join(root, "target/bench");
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, "workers-hono.json"), JSON.stringify(summary, null, 1));
fs.writeFileSync(path.join(out, "workers-hono.md"), md);
console.log(md);
