// Checks on workerd when a rate-limit Durable Object writes its state and when it deletes it:
// a change is written at once when the object has not written in the last second, and later
// changes in that second by one alarm when the second is up; a written state is deleted once it
// has expired.
// Usage: node tests/e2e/workers/limiter-cleanup.mjs BUILD_DIR
// The build must embed tests/e2e/gateway.toml (per client address: route /limited, 50 per hour;
// /brief, 5 per second). Prints what it saw, one line per step; exits 1 on the first failure.
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
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
try {
  await mf.ready;
  const ns = await mf.getDurableObjectNamespace("RATE_LIMITER");
  // the object the worker used: named after the core's key for the policy and client
  const object = (policy) => ns.get(ns.idFromName(`rl:${policy}:${CLIENT}`));
  const ask = async (policy, path) => (await object(policy).fetch(`https://limiter/${path}`)).text();
  const send = async (path) => {
    const res = await mf.dispatchFetch(`http://gateway.test${path}`, { headers: { "cf-connecting-ip": CLIENT } });
    await res.arrayBuffer();
    return res;
  };
  // polls until `done` says so of what `read` gives, or WAIT_MS have passed; the last one read
  const poll = async (read, done) => {
    const start = Date.now();
    let last = await read();
    while (!done(last) && Date.now() - start < WAIT_MS) {
      await sleep(100);
      last = await read();
    }
    return last;
  };

  // five admissions in a row: the first is written at once, the other four by one alarm
  const statuses = [];
  for (let i = 0; i < 5; i++) statuses.push((await send("/limited")).status);
  console.log(`five requests: ${statuses.join(" ")}`);
  const first = await ask("fifty", "");
  console.log(`right after them: ${first === "" ? "nothing" : "a state"} stored, writes ${await ask("fifty", "writes")}`);
  const writes = await poll(() => ask("fifty", "writes"), (w) => w !== "1");
  const last = await ask("fifty", "");
  console.log(`then: writes ${writes}, the stored state ${last !== first && last !== "" ? "changed" : "the same"}`);

  // a state that lives 200 ms: written, then deleted once it has expired
  const brief = await send("/brief");
  console.log(`brief: ${brief.status}, ratelimit ${brief.headers.get("ratelimit")}`);
  console.log(`brief stored after the request: ${(await ask("brief", "")) === "" ? "nothing" : "a state"}`);
  const gone = await poll(() => ask("brief", ""), (s) => s === "");
  if (gone === "") console.log("brief stored once expired: nothing");
  else fail(`the state was still stored ${WAIT_MS} ms later`);
} catch (e) {
  fail(e.stack ?? String(e));
} finally {
  await mf.dispose();
}
process.exit(failed ? 1 : 0);
