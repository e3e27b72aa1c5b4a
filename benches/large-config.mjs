// Writes, from the benchmarks' config (benches/gateway.toml):
// - target/bench/large-gateway.toml: 10,000 more deny-list CIDRs and 1,000 more routes, for what
//   an instance's or isolate's start costs as the config grows (scripts/bench-spin.sh,
//   benches/workers/coldstart.mjs);
// - target/bench/cidr-gateway.toml: the 10,000 more CIDRs only, and target/bench/deny-list.json,
//   every CIDR of its deny list, for the Hono comparison (benches/workers/hono.mjs), where Hono's
//   `ip-restriction` gets the same list;
// - target/bench/cidr-sampled-gateway.toml: cidr-gateway.toml logging 1% of the answers below
//   400 (`access_log_sample = 0.01`), for the Hono comparison's rows without most of the access
//   log, which Hono's stack does not write.
// Usage: node benches/large-config.mjs
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
let src = fs.readFileSync(path.join(root, "benches/gateway.toml"), "utf8");
const cidrs = [];
// deterministic /24s spread over 11.0.0.0/8..190.0.0.0/8, never a benchmark client's address
for (let i = 0; i < 10000; i++) cidrs.push(`"${11 + (i % 180)}.${Math.floor(i / 180) % 256}.${(i * 7) % 256}.0/24"`);
if (!src.includes("deny_ips = [\n")) throw new Error("benches/gateway.toml has no deny_ips list");
src = src.replace("deny_ips = [\n", `deny_ips = [\n  ${cidrs.join(", ")},\n`);
const cidrOnly = src;
for (let i = 0; i < 1000; i++) {
  src += `\n[[routes]]\nname = "r${i}"\nmethods = ["GET"]\npath = "/svc${i % 37}/res${i}/{id}"\nupstream = "app"\n`;
}
fs.mkdirSync(path.join(root, "target/bench"), { recursive: true });
fs.writeFileSync(path.join(root, "target/bench/large-gateway.toml"), src);
fs.writeFileSync(path.join(root, "target/bench/cidr-gateway.toml"), cidrOnly);
if (!cidrOnly.includes("[gateway]\n")) throw new Error("benches/gateway.toml has no [gateway] table");
const sampled = cidrOnly.replace("[gateway]\n", "[gateway]\naccess_log_sample = 0.01\n");
fs.writeFileSync(path.join(root, "target/bench/cidr-sampled-gateway.toml"), sampled);
// the deny list as written in the config: every quoted CIDR between `deny_ips = [` and `]`
const list = cidrOnly.slice(cidrOnly.indexOf("deny_ips = ["), cidrOnly.indexOf("]", cidrOnly.indexOf("deny_ips = [")));
const deny = [...list.matchAll(/"([^"]+)"/g)].map((m) => m[1]);
fs.writeFileSync(path.join(root, "target/bench/deny-list.json"), JSON.stringify(deny));
console.log(`wrote target/bench/{large,cidr,cidr-sampled}-gateway.toml, target/bench/deny-list.json (${deny.length} CIDRs)`);
