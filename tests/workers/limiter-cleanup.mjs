// Checks on workerd that a rate-limit Durable Object deletes its stored state once the state has
// expired (its alarm). Usage: node tests/workers/limiter-cleanup.mjs BUILD_DIR
// The build must embed tests/e2e/gateway.toml (route /brief, rate limit `brief`: 5 per second
// per client address). Prints what it saw, one line per step; exits 1 on the first failure.
import { Miniflare } from "miniflare";
import { workerOptions } from "./options.mjs";

const [buildDir] = process.argv.slice(2);
if (!buildDir) {
  console.error("usage: limiter-cleanup.mjs BUILD_DIR");
  process.exit(2);
}
const CLIENT = "198.51.100.77";
const WAIT_MS = 15000;

const mf = new Miniflare({ ...workerOptions(buildDir), handleStructuredLogs() {} });
let failed = false;
const fail = (why) => {
  console.log(`FAIL ${why}`);
  failed = true;
};
try {
  await mf.ready;
  const res = await mf.dispatchFetch("http://gateway.test/brief", { headers: { "cf-connecting-ip": CLIENT } });
  await res.arrayBuffer();
  console.log(`request: ${res.status}, ratelimit ${res.headers.get("ratelimit")}`);
  if (res.status !== 200) fail(`the request got ${res.status}`);

  // the object the worker used: named after the core's key for this policy and client
  const ns = await mf.getDurableObjectNamespace("RATE_LIMITER");
  const stub = ns.get(ns.idFromName(`rl:brief:${CLIENT}`));
  const stored = async () => (await stub.fetch("https://limiter/")).text();

  const first = await stored();
  console.log(`stored after the request: ${first === "" ? "nothing" : "a state"}`);
  if (first === "") fail("the object stored no state");

  const start = Date.now();
  let last = first;
  while (!failed && last !== "" && Date.now() - start < WAIT_MS) {
    await new Promise((ok) => setTimeout(ok, 250));
    last = await stored();
  }
  if (!failed) {
    if (last === "") console.log("stored once expired: nothing");
    else fail(`the state was still stored ${WAIT_MS} ms later`);
  }
} catch (e) {
  fail(e.stack ?? String(e));
} finally {
  await mf.dispose();
}
process.exit(failed ? 1 : 0);
