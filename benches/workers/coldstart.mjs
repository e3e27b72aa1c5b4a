// A Workers isolate's cold start, side by side: for each build, ROUNDS times (default 15) a new
// workerd (Miniflare) is started with it and the time of its first answer is taken, then that of
// a second, warm one. The first answer pays for loading the module, instantiating the wasm and
// (for Portcullis) compiling the embedded config; the difference from the pass-through worker's
// is what Portcullis adds to a cold start. Loopback only; bounded by ROUNDS.
//
// Builds (WORKER_OPT=1, as deployed):
//   node benches/large-config.mjs
//   PORTCULLIS_CONFIG=target/bench/large-gateway.toml WORKER_OUT_DIR=build-large WORKER_OPT=1 sh scripts/build-worker.sh
//   PORTCULLIS_CONFIG=benches/gateway.toml WORKER_OUT_DIR=build-bench WORKER_OPT=1 sh scripts/build-worker.sh
//   WORKER_CRATE=benches/passthrough-worker WORKER_OPT=1 sh scripts/build-worker.sh
// Usage: node benches/workers/coldstart.mjs   (results in target/bench/workers-coldstart.{md,json})
import { Miniflare } from "miniflare";
import fs from "node:fs";
import path from "node:path";
import { root, startUpstream, portcullisOptions, passthroughOptions, benchToken } from "./common.mjs";

const ROUNDS = Number(process.env.ROUNDS ?? 15);
// `/static` is answered by the gateway itself: no upstream, no store, so the first answer's
// time is the start-up and one trip through the pipeline. `/bare/42` proxies with no policy, as
// the pass-through does; `/unlimited/42` adds the deny list, the JWT and the transforms (all but
// the rate limit's Durable Object, whose own start is not the gateway's)
const auth = { authorization: `Bearer ${benchToken()}` };
const targets = [
  ["pass-through worker", passthroughOptions(), "/"],
  ["Portcullis, bench config, /static", portcullisOptions("build-bench"), "/static"],
  ["Portcullis, bench config, /bare/42", portcullisOptions("build-bench"), "/bare/42"],
  ["Portcullis, bench config, /unlimited/42", portcullisOptions("build-bench"), "/unlimited/42", auth],
  ["Portcullis, 1,000 routes, 10,000 CIDRs, /static", portcullisOptions("build-large"), "/static"],
  ["Portcullis, 1,000 routes, 10,000 CIDRs, /unlimited/42", portcullisOptions("build-large"), "/unlimited/42", auth],
];

const upstream = await startUpstream();
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = targets.map(([name]) => ({ name, start: [], first: [], warm: [] }));
for (let round = 0; round < ROUNDS; round++) {
  for (const [i, [, options, url, headers = {}]] of targets.entries()) {
    const t_start = process.hrtime.bigint();
    const mf = new Miniflare(options);
    const base = await mf.ready;
    const starting = ms(t_start);
    let t0 = process.hrtime.bigint();
    let res = await fetch(new URL(url, base), { headers });
    await res.arrayBuffer();
    const first = ms(t0);
    if (res.status !== 200) throw new Error(`${targets[i][0]} answered ${res.status}`);
    t0 = process.hrtime.bigint();
    res = await fetch(new URL(url, base), { headers });
    await res.arrayBuffer();
    results[i].start.push(starting + first);
    results[i].first.push(first);
    results[i].warm.push(ms(t0));
    await mf.dispose();
  }
}
upstream.close();

const [base, baseStart] = [median(results[0].first), median(results[0].start)];
let md = "| target | workerd start to first answer, p50 ms | ready to first answer, p50 ms | warm answer p50 ms | first answer over the pass-through's |\n|---|---|---|---|---|\n";
for (const r of results) {
  const [first, start] = [median(r.first), median(r.start)];
  md += `| ${r.name} | ${start.toFixed(1)} (${(start - baseStart).toFixed(1)} over) | ${first.toFixed(2)} | ${median(r.warm).toFixed(2)} | ${(first - base).toFixed(2)} ms |\n`;
}
md += `\n${ROUNDS} rounds; each a new workerd, its first request, then a second.\n`;
const out = path.join(root, "target/bench");
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, "workers-coldstart.md"), md);
fs.writeFileSync(path.join(out, "workers-coldstart.json"), JSON.stringify({ rounds: ROUNDS, results }, null, 1));
console.log(md);
