// Checks on workerd that once a rate-limit Durable Object has refused a key, the worker refuses
// the key's next requests itself, without calling the object, while the object's state would
// refuse them. Usage: node tests/e2e/workers/limiter-memo.mjs BUILD_DIR
// The build must embed tests/e2e/gateway.toml (route /limited, rate limit `fifty`: 50 per hour
// per client address). Prints what it saw, one line per step; exits 1 on an error.
import { Miniflare } from "miniflare";
import { workerOptions } from "./options.mjs";

const [buildDir] = process.argv.slice(2);
if (!buildDir) {
  console.error("usage: limiter-memo.mjs BUILD_DIR");
  process.exit(2);
}
const CLIENT = "198.51.100.78";

const mf = new Miniflare({ ...workerOptions(buildDir), handleStructuredLogs() {} });
let failed = false;
try {
  await mf.ready;
  const counts = {};
  let last;
  for (let i = 0; i < 60; i++) {
    last = await mf.dispatchFetch("http://gateway.test/limited", { headers: { "cf-connecting-ip": CLIENT } });
    await last.arrayBuffer();
    counts[last.status] = (counts[last.status] ?? 0) + 1;
  }
  console.log(`statuses: ${Object.entries(counts).map(([s, n]) => `${n} x ${s}`).join(", ")}`);
  const ratelimit = last.headers.get("ratelimit") ?? "";
  console.log(`the last refusal: retry-after ${last.headers.has("retry-after") ? "set" : "missing"}, ratelimit ${ratelimit.split(";t=")[0]}`);

  // the object the worker used: named after the core's key for this policy and client
  const ns = await mf.getDurableObjectNamespace("RATE_LIMITER");
  const stub = ns.get(ns.idFromName(`rl:fifty:${CLIENT}`));
  console.log(`admit requests the object answered: ${await (await stub.fetch("https://limiter/calls")).text()}`);
} catch (e) {
  console.log(`FAIL ${e.stack ?? String(e)}`);
  failed = true;
} finally {
  await mf.dispose();
}
process.exit(failed ? 1 : 0);
