// The Miniflare options that run the built Portcullis worker as wrangler.toml declares it (the
// same bindings), shared by serve.mjs and the limiter clean-up check.
import path from "node:path";

export function workerOptions(buildDir, port = 0) {
  return {
    host: "127.0.0.1",
    port: Number(port),
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
      // the end-to-end config's `secret_env` key (the suite's HS_SECRET), as a secret would be;
      // PORTCULLIS_TEST_HS_SECRET replaces it (empty: as if it were missing)
      PORTCULLIS_E2E_HS_SECRET:
        process.env.PORTCULLIS_TEST_HS_SECRET ?? "scenario-secret-0123456789abcdef-xyz",
    },
    // the `request.cf` of every request, for tests of country and ASN lists (JSON)
    ...(process.env.PORTCULLIS_TEST_CF ? { cf: JSON.parse(process.env.PORTCULLIS_TEST_CF) } : {}),
  };
}
