// What the Workers benchmarks (load.mjs, ab.mjs) share: the upstream they proxy to, the
// Miniflare settings of Portcullis and of the pass-through worker, and a token for the bench
// config's JWT provider.
import http from "node:http";
import crypto from "node:crypto";
import path from "node:path";

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
});

/// Miniflare options for the pass-through worker (benches/passthrough-worker), aimed at the
/// upstream.
export const passthroughOptions = () => ({
  ...common,
  scriptPath: path.join(root, "benches/passthrough-worker/build/shim.mjs"),
  bindings: { UPSTREAM: `http://127.0.0.1:${UPSTREAM_PORT}` },
});

/// An HS256 token for benches/gateway.toml's `bench` provider, valid for an hour.
export function benchToken() {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT", kid: "bench" });
  const claims = b64({ iss: "https://bench.portcullis.local/", aud: "bench", sub: "bench-user", scope: "items:read", exp: Math.floor(Date.now() / 1000) + 3600 });
  const sig = crypto.createHmac("sha256", "portcullis-bench-secret-0123456789abcdef").update(`${head}.${claims}`).digest("base64url");
  return `${head}.${claims}.${sig}`;
}
