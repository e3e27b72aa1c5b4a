// A V8 CPU profile of a worker build on the local workerd while it serves N requests of one route,
// taken through the inspector, summed by function (self time). Build with names kept so wasm
// functions have them: WORKER_OPT=1 WORKER_KEEP_NAMES=1 WORKER_OUT_DIR=build-prof
// PORTCULLIS_CONFIG=benches/gateway.toml scripts/build-worker.sh
// Usage: BUILD=build-prof [ROUTE=/bare/42] [N=3000] [WARM=300] [TOP=30] [INSPECTOR_PORT=9231] node benches/workers/profile.mjs
// WARM=0 N=1 profiles an isolate's first request (the wasm is instantiated when the module loads,
// before the profiler starts; what the first request adds, such as building the gateway, is in).
// BUILD=passthrough profiles the pass-through worker. Loopback only; bounded by N requests.
// The profile covers the worker's process (its Durable Objects too). With the inspector attached
// `console.log` costs more than without, so its share here is an upper bound.
import { Miniflare } from "miniflare";
import http from "node:http";
import WebSocket from "ws";
import { startUpstream, portcullisOptions, passthroughOptions, benchToken } from "./common.mjs";

const N = Number(process.env.N ?? 3000);
const ROUTE = process.env.ROUTE ?? "/bare/42";
const BUILD = process.env.BUILD ?? "build-prof";
const TOP = Number(process.env.TOP ?? 30);
const WARM = Number(process.env.WARM ?? 300);
const INSPECTOR_PORT = Number(process.env.INSPECTOR_PORT ?? 9231);

const upstream = await startUpstream();
const options = BUILD === "passthrough" ? passthroughOptions() : portcullisOptions(BUILD);
const mf = new Miniflare({ ...options, inspectorPort: INSPECTOR_PORT });
const port = Number(new URL(await mf.ready).port);
const targets = await (await fetch(`http://127.0.0.1:${INSPECTOR_PORT}/json/list`)).json();
const target = targets.find((t) => t.id === "core:user:") ?? targets[0];
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((ok, fail) => { ws.on("open", ok); ws.on("error", fail); });
let lastId = 0;
const pending = new Map();
ws.on("message", (m) => {
  const msg = JSON.parse(m);
  if (pending.has(msg.id)) { pending.get(msg.id)(msg); pending.delete(msg.id); }
});
const call = (method, params = {}) => new Promise((ok) => {
  const id = ++lastId;
  pending.set(id, ok);
  ws.send(JSON.stringify({ id, method, params }));
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const headers = { "cf-connecting-ip": "198.51.100.7", authorization: `Bearer ${benchToken()}` };
const once = () => new Promise((ok, fail) => {
  const req = http.request({ host: "127.0.0.1", port, path: ROUTE, agent, headers }, (res) => {
    res.resume();
    res.on("end", () => (res.statusCode === 200 ? ok() : fail(new Error(`${ROUTE}: ${res.statusCode}`))));
  });
  req.on("error", fail);
  req.end();
});

for (let i = 0; i < WARM; i++) await once(); // warm: JIT, token cache, the Durable Object
await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 50 });
await call("Profiler.start");
const start = process.hrtime.bigint();
for (let i = 0; i < N; i++) await once();
const ms = Number(process.hrtime.bigint() - start) / 1e6;
const { result } = await call("Profiler.stop");

// self samples per function, and for nameless internal functions, who called them
const { nodes, samples } = result.profile;
const byId = new Map(nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of nodes) for (const c of n.children ?? []) parent.set(c, n);
const name = (n) => `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.split("/").pop()}`.trim();
const bySelf = new Map();
const anonymous = new Map();
for (const id of samples) {
  const n = byId.get(id);
  bySelf.set(name(n), (bySelf.get(name(n)) ?? 0) + 1);
  if (!n.callFrame.functionName && !n.callFrame.url) {
    const chain = [];
    for (let p = parent.get(id); p && chain.length < 3; p = parent.get(p.id)) chain.push(name(p));
    const k = chain.join(" < ") || "(root)";
    anonymous.set(k, (anonymous.get(k) ?? 0) + 1);
  }
}
const pct = (c) => `${((100 * c) / samples.length).toFixed(1).padStart(5)}%`;
console.log(`${BUILD} ${ROUTE}: ${N} requests in ${ms.toFixed(0)} ms (${(ms / N).toFixed(3)} ms each, profiler attached); ${samples.length} samples`);
for (const [k, c] of [...bySelf].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`${pct(c)}  ${k}`);
console.log("nameless functions, by their callers:");
for (const [k, c] of [...anonymous].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`${pct(c)}  ${k}`);
ws.close();
agent.destroy();
await mf.dispose();
upstream.close();
