// Checks on workerd when a rate-limit Durable Object writes its state and when it deletes it:
// the state is written behind the answers (one alarm, a second after the first change, for all
// the admissions in between), a state that has expired by then is never written, and a written
// state is deleted once it has expired.
// Usage: node tests/workers/limiter-cleanup.mjs BUILD_DIR
// The build must embed tests/e2e/gateway.toml (per client address: route /limited, 50 per hour;
// /lingering, 1 per 4 s; /brief, 5 per second). Prints what it saw, one line per step; exits 1
// on the first failure.
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
  // polls the stored state until `done` says so or WAIT_MS have passed; the last one read
  const poll = async (policy, done) => {
    const start = Date.now();
    let last = await ask(policy, "");
    while (!done(last) && Date.now() - start < WAIT_MS) {
      await sleep(100);
      last = await ask(policy, "");
    }
    return last;
  };

  // five admissions in a row: the answers do not wait for a write, and one write follows
  const statuses = [];
  for (let i = 0; i < 5; i++) statuses.push((await send("/limited")).status);
  console.log(`five requests: ${statuses.join(" ")}`);
  const right_after = await ask("fifty", "");
  console.log(`stored right after them: ${right_after === "" ? "nothing yet" : "a state"}`);
  const written = await poll("fifty", (s) => s !== "");
  console.log(`stored within ${WAIT_MS} ms: ${written === "" ? "nothing" : "a state"}`);
  console.log(`writes: ${await ask("fifty", "writes")}, admit requests: ${await ask("fifty", "calls")}`);
  if (written === "") fail("the state was never written");

  // a state that lives 4 s: written, then deleted once it has expired
  const lingering = await send("/lingering");
  console.log(`lingering: ${lingering.status}, ratelimit ${lingering.headers.get("ratelimit")}`);
  const stored = await poll("lingering", (s) => s !== "");
  console.log(`lingering stored: ${stored === "" ? "nothing" : "a state"}`);
  const gone = stored === "" ? stored : await poll("lingering", (s) => s === "");
  console.log(`lingering once expired: ${gone === "" ? "nothing" : "a state"}`);

  // a state that expires in 200 ms, before its write would be due: never written
  const brief = await send("/brief");
  console.log(`brief: ${brief.status}, ratelimit ${brief.headers.get("ratelimit")}`);
  await sleep(2500);
  console.log(`brief after 2.5 s: stored ${(await ask("brief", "")) === "" ? "nothing" : "a state"}, writes ${await ask("brief", "writes")}`);
} catch (e) {
  fail(e.stack ?? String(e));
} finally {
  await mf.dispose();
}
process.exit(failed ? 1 : 0);
