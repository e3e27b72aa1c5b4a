// The Miniflare options that run the built Portcullis worker as wrangler.toml declares it (the
// same bindings), shared by serve.mjs, the limiter checks and the refusals benchmark; plus a
// Workers Analytics Engine dataset, which wrangler.toml leaves to the operator.
import path from "node:path";

export function workerOptions(buildDir, port = 0) {
  return {
    host: "127.0.0.1",
    port: Number(port),
    // the `request.cf` of every request, for tests of country and ASN lists (JSON; an option
    // Miniflare shares between its workers)
    ...(process.env.PORTCULLIS_TEST_CF ? { cf: JSON.parse(process.env.PORTCULLIS_TEST_CF) } : {}),
    workers: [
      {
        name: "portcullis",
        modules: true,
        scriptPath: path.resolve(buildDir, "shim.mjs"),
        modulesRules: [
          { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
          { type: "CompiledWasm", include: ["**/*.wasm"] },
        ],
        compatibilityDate: "2026-04-01",
        kvNamespaces: ["PORTCULLIS_KV"],
        durableObjects: { RATE_LIMITER: { className: "RateLimiter", useSQLite: true } },
        bindings: {
          PORTCULLIS_CACHE: process.env.PORTCULLIS_CACHE ?? "kv",
          // the end-to-end config's `secret_env` key (the suite's HS_SECRET), as a secret would
          // be; PORTCULLIS_TEST_HS_SECRET replaces it (empty: as if it were missing)
          PORTCULLIS_E2E_HS_SECRET:
            process.env.PORTCULLIS_TEST_HS_SECRET ?? "scenario-secret-0123456789abcdef-xyz",
        },
        // Miniflare's own Analytics Engine binding drops every data point; this one checks
        // each as the platform does and prints it, so the suite can read what was written
        wrappedBindings: { PORTCULLIS_ANALYTICS: "analytics-engine" },
      },
      { name: "analytics-engine", modules: true, script: ANALYTICS_ENGINE },
    ],
  };
}

// `writeDataPoint` with the limits Cloudflare documents for a data point (one index of at most
// 96 bytes; at most 20 blobs, of 16 KB in all; at most 20 doubles, numbers only): a point past
// them throws, as the platform's binding does. A point within them is printed as
// `analytics-engine {json}` on the worker's log.
const ANALYTICS_ENGINE = `
const encoder = new TextEncoder();
function check(point) {
  const { indexes = [], blobs = [], doubles = [] } = point ?? {};
  if (!Array.isArray(indexes) || indexes.length > 1) throw new TypeError("at most one index");
  for (const i of indexes) {
    if (typeof i !== "string" || encoder.encode(i).length > 96) {
      throw new TypeError("an index is a string of at most 96 bytes");
    }
  }
  if (!Array.isArray(blobs) || blobs.length > 20) throw new TypeError("at most 20 blobs");
  let bytes = 0;
  for (const b of blobs) {
    if (b !== null && typeof b !== "string") throw new TypeError("a blob is a string or null");
    bytes += b === null ? 0 : encoder.encode(b).length;
  }
  if (bytes > 16 * 1024) throw new TypeError("the blobs pass 16 KB");
  if (!Array.isArray(doubles) || doubles.length > 20) throw new TypeError("at most 20 doubles");
  for (const d of doubles) {
    if (typeof d !== "number") throw new TypeError("a double is a number");
  }
  return { indexes, blobs, doubles };
}
export default function () {
  return {
    writeDataPoint(point) {
      console.log("analytics-engine " + JSON.stringify(check(point)));
    },
  };
}
`;
