// The Workers streaming benchmark: on the local workerd (Miniflare), in one run, side by side,
// the pass-through Rust worker and Portcullis (benches/gateway.toml's `bare` route: no policy,
// so what is measured is how the body gets through) proxying large bodies from one upstream:
//  - time to the first byte of a 10 MiB body (TTFB_N downloads per round, p50),
//  - throughput of a 100 MiB body (MiB/s),
//  - how much the upstream had sent when the client got its first byte (it streams, or not).
// Loopback only, bounded: ROUNDS rounds, a fixed number of downloads each. Writes
// target/bench/workers-stream.{json,md}. Run it with scripts/bench-workers.sh (after load.mjs).
import { Miniflare } from "miniflare";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { root, UPSTREAM_PORT, portcullisOptions, passthroughOptions } from "./common.mjs";

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const TTFB_N = Number(process.env.TTFB_N ?? 20);
const TEN_MIB = 10 << 20;
const HUNDRED_MIB = 100 << 20;

// `big-N` anywhere in the path: N bytes with their length declared, 64 KiB per write
const piece = Buffer.alloc(64 * 1024, 120);
const sent = new Map(); // path → bytes written so far
const upstream = http.createServer((req, res) => {
  req.resume();
  const m = /big-(\d+)/.exec(req.url);
  const n = m ? Number(m[1]) : 0;
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": n });
  let left = n;
  const key = req.url;
  sent.set(key, 0);
  const pump = () => {
    while (left > 0) {
      const chunk = left >= piece.length ? piece : piece.subarray(0, left);
      left -= chunk.length;
      sent.set(key, n - left);
      if (!res.write(chunk)) return res.once("drain", pump);
    }
    res.end();
  };
  pump();
});
await new Promise((ok) => upstream.listen(UPSTREAM_PORT, "127.0.0.1", ok));

const build = process.env.PORTCULLIS_BUILD ?? "build-bench";
const mfPortcullis = new Miniflare(portcullisOptions(build));
const mfPass = new Miniflare(passthroughOptions());
const targets = {
  passthrough: { port: Number(new URL(await mfPass.ready).port), path: (n, i) => `/bare/big-${n}-${i}` },
  portcullis: { port: Number(new URL(await mfPortcullis.ready).port), path: (n, i) => `/bare/big-${n}-${i}` },
};

/// Downloads one body; resolves with the time to its first byte and to its end (ms), its length,
/// and how many bytes the upstream had written when the first byte arrived.
function download(t, n, i) {
  return new Promise((ok, fail) => {
    const start = process.hrtime.bigint();
    const p = t.path(n, i);
    const req = http.request({ host: "127.0.0.1", port: t.port, path: p, headers: { "cf-connecting-ip": "198.51.100.9" } }, (res) => {
      let first = null;
      let upstreamAtFirst = 0;
      let len = 0;
      res.on("data", (c) => {
        if (first === null) {
          first = Number(process.hrtime.bigint() - start) / 1e6;
          // the upstream saw the rewritten path on Portcullis' route
          upstreamAtFirst = Math.max(...[...sent.entries()].filter(([k]) => k.endsWith(`big-${n}-${i}`)).map(([, v]) => v), 0);
        }
        len += c.length;
      });
      res.on("end", () => {
        const total = Number(process.hrtime.bigint() - start) / 1e6;
        if (res.statusCode !== 200 || len !== n) return fail(new Error(`${p}: ${res.statusCode}, ${len} of ${n} bytes`));
        ok({ first, total, upstreamAtFirst });
      });
    });
    req.on("error", fail);
    req.end();
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = {};
let i = 0;
try {
  for (const t of Object.values(targets)) await download(t, TEN_MIB, i++); // warm up
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, t] of Object.entries(targets)) {
      const firsts = [];
      const early = [];
      for (let k = 0; k < TTFB_N; k++) {
        const d = await download(t, TEN_MIB, i++);
        firsts.push(d.first);
        early.push(d.upstreamAtFirst);
      }
      const big = await download(t, HUNDRED_MIB, i++);
      const r = { ttfb_p50_ms: median(firsts), upstream_sent_at_first_byte: median(early), mib_per_s: 100 / (big.total / 1000) };
      ((results[name] ??= []).push(r));
      console.error(`round ${round + 1} ${name}: TTFB p50 ${r.ttfb_p50_ms.toFixed(3)} ms (upstream had sent ${r.upstream_sent_at_first_byte} B), 100 MiB at ${r.mib_per_s.toFixed(0)} MiB/s`);
    }
  }
} finally {
  await mfPortcullis.dispose();
  await mfPass.dispose();
  upstream.close();
}

const m = (name, key) => median(results[name].map((r) => r[key]));
const summary = { rounds: ROUNDS, ttfb_downloads: TTFB_N, when: new Date().toISOString(), results };
let table = "| target | TTFB of 10 MiB, p50 ms | upstream bytes sent at the first byte (p50) | 100 MiB, MiB/s |\n|---|---|---|---|\n";
for (const name of Object.keys(targets)) {
  table += `| ${name} | ${m(name, "ttfb_p50_ms").toFixed(3)} | ${m(name, "upstream_sent_at_first_byte")} | ${m(name, "mib_per_s").toFixed(0)} |\n`;
}
const added = m("portcullis", "ttfb_p50_ms") - m("passthrough", "ttfb_p50_ms");
const ratio = m("portcullis", "mib_per_s") / m("passthrough", "mib_per_s");
table += `| portcullis − passthrough | ${added.toFixed(3)} ms (target ≤ 0.3) | | ${ratio.toFixed(2)}× (target ≥ 0.9) |\n`;
summary.ttfb_added_ms = added;
summary.throughput_ratio = ratio;
fs.mkdirSync(path.join(root, "target/bench"), { recursive: true });
fs.writeFileSync(path.join(root, "target/bench/workers-stream.json"), JSON.stringify(summary, null, 2));
fs.writeFileSync(path.join(root, "target/bench/workers-stream.md"), table);
console.log(table);
