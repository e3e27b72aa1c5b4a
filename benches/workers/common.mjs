// What the Workers benchmarks (load.mjs, ab.mjs, hono.mjs, …) share: the upstream they proxy to,
// the Miniflare settings of Portcullis and of the pass-through worker, a token for the bench
// config's JWT provider, and the load client.
import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Miniflare } from "miniflare";

export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
export const UPSTREAM_PORT = 18190;

/// The upstream: a small JSON answer, keep-alive, on 127.0.0.1:UPSTREAM_PORT. Resolves once it
/// listens.
export async function startUpstream() {
  const body = JSON.stringify({ id: 1, name: "item", tags: ["a", "b"] });
  const upstream = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json", "content-length": body.length, server: "bench" });
      res.end(body);
    });
  });
  await new Promise((ok) => upstream.listen(UPSTREAM_PORT, "127.0.0.1", ok));
  return upstream;
}

const common = {
  host: "127.0.0.1",
  port: 0,
  compatibilityDate: "2026-04-01",
  modules: true,
  modulesRules: [
    { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
    { type: "CompiledWasm", include: ["**/*.wasm"] },
  ],
  handleStructuredLogs() {}, // the access log is tested elsewhere
};

/// Miniflare options for the Portcullis build in adapters/workers/BUILD.
export const portcullisOptions = (build) => ({
  ...common,
  scriptPath: path.join(root, "adapters/workers", build, "shim.mjs"),
  kvNamespaces: ["PORTCULLIS_KV"],
  durableObjects: { RATE_LIMITER: { className: "RateLimiter", useSQLite: true } },
  bindings: { PORTCULLIS_CACHE: "kv" },
  // Miniflare's own dataset binding: the call costs what crossing into it costs; it keeps nothing
  analyticsEngineDatasets: { PORTCULLIS_ANALYTICS: { dataset: "portcullis_bench" } },
});

/// Miniflare options for a worker module (bundled if it imports packages) aimed at the upstream
/// through its `UPSTREAM` var: the pass-throughs and Hono (benches/workers/hono/).
export const jsWorkerOptions = (scriptPath) => ({
  ...common,
  scriptPath,
  bindings: { UPSTREAM: `http://127.0.0.1:${UPSTREAM_PORT}` },
});

/// Miniflare options for the JavaScript pass-through that also makes, by the letters of `steps`,
/// the platform objects Portcullis's proxy path makes (benches/workers/platform/steps.mjs).
export const stepsWorkerOptions = (steps) => {
  const options = jsWorkerOptions(path.join(root, "benches/workers/platform/steps.mjs"));
  options.bindings = { ...options.bindings, STEPS: steps };
  return options;
};

/// Miniflare options for the Rust pass-through worker (benches/passthrough-worker).
export const passthroughOptions = () => jsWorkerOptions(path.join(root, "benches/passthrough-worker/build/shim.mjs"));

/// An HS256 token for benches/gateway.toml's `bench` provider, valid for an hour.
export function benchToken() {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT", kid: "bench" });
  const claims = b64({ iss: "https://bench.portcullis.local/", aud: "bench", sub: "bench-user", scope: "items:read", exp: Math.floor(Date.now() / 1000) + 3600 });
  const sig = crypto.createHmac("sha256", "portcullis-bench-secret-0123456789abcdef").update(`${head}.${claims}`).digest("base64url");
  return `${head}.${claims}.${sig}`;
}

/// One GET of `t.path` (else `path`) on 127.0.0.1:`t.port` with `t.headers`; resolves to its
/// latency in ms, fails on any status but 200.
export function request(agent, t, path = "/") {
  return new Promise((ok, fail) => {
    const start = process.hrtime.bigint();
    const req = http.request({ host: "127.0.0.1", port: t.port, path: t.path ?? path, agent, headers: t.headers }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () =>
        res.statusCode === 200
          ? ok(Number(process.hrtime.bigint() - start) / 1e6)
          : fail(new Error(`${t.port}${t.path ?? path} answered ${res.statusCode}: ${Buffer.concat(chunks)}`)),
      );
    });
    req.on("error", fail);
    req.end();
  });
}

/// `concurrency` keep-alive connections, each sending its next request when the last is answered,
/// for `seconds` or `maxRequests` requests in all, whichever comes first: p50, p99 and req/s.
export async function measureLoad(t, concurrency, { seconds, maxRequests, path = "/" }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies = [];
  const cpuBefore = t.pid ? cpuSeconds(t.pid) : 0;
  const deadline = Date.now() + seconds * 1000;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < deadline && latencies.length < maxRequests) latencies.push(await request(agent, t, path));
    }),
  );
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  const cpuUs = t.pid ? ((cpuSeconds(t.pid) - cpuBefore) * 1e6) / latencies.length : undefined;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))];
  return { n: latencies.length, p50: pct(50), p99: pct(99), rps: latencies.length / secs, cpuUs };
}

/// The workerd processes this process has started (Linux: read from /proc), by PID.
function workerdChildren() {
  const pids = new Set();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const [, comm, rest] = stat.match(/^\d+ \((.*)\) (.*)$/s);
      if (comm === "workerd" && Number(rest.split(" ")[1]) === process.pid) pids.add(Number(entry));
    } catch {
      // the process ended while the list was read
    }
  }
  return pids;
}

/// CPU time (user and system, all threads) process `pid` has used so far, in seconds.
export function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields 14 and 15 of stat(5), utime and stime, in clock ticks (100 a second on Linux)
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/// A Miniflare with `options`, ready, with its port and the PID of the workerd it started, so a
/// measurement can report the runtime's CPU time per request (the load client, the upstream and
/// the other targets run in other processes): the stable measure of a noisy machine.
export async function startWorker(options) {
  const before = workerdChildren();
  const mf = new Miniflare(options);
  const port = Number(new URL(await mf.ready).port);
  const started = [...workerdChildren()].filter((pid) => !before.has(pid));
  return { mf, port, pid: started.length === 1 ? started[0] : undefined };
}
