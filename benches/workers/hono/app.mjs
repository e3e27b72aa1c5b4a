// The Hono side of the Workers comparison (benches/workers/hono.mjs): the policy of
// benches/gateway.toml's `items` route, written with Hono's built-in middleware as a Hono user
// would: `ip-restriction` with the same deny list (target/bench/deny-list.json), `jwt` (HS256,
// issuer and audience checked), the `items:read` scope and the integer `id` checked by hand, a
// fixed-window limiter per consumer in isolate memory (Hono has none built in; this is the usual
// one, and unlike Portcullis's it is neither exact across isolates nor durable), `proxy` to the
// upstream with the request and response header edits of `to-backend` and `to-client`.
// Bundled by wrangler (benches/workers/hono/wrangler.toml); the upstream is the `UPSTREAM` var.
import { Hono } from "hono";
import { ipRestriction } from "hono/ip-restriction";
import { jwt } from "hono/jwt";
import { proxy } from "hono/proxy";
import { getConnInfo } from "hono/cloudflare-workers";
import denyList from "../../../target/bench/deny-list.json";

const LIMIT = 1_000_000; // per consumer per window, as `per_consumer` in benches/gateway.toml
const WINDOW_MS = 60_000;
const windows = new Map(); // consumer → { start, count }

const problem = (c, status, title) => c.json({ type: "about:blank", title, status }, status);

const app = new Hono();
app.get(
  "/items/:id",
  ipRestriction(getConnInfo, { denyList }),
  jwt({
    secret: "portcullis-bench-secret-0123456789abcdef",
    alg: "HS256",
    verification: { iss: "https://bench.portcullis.local/", aud: "bench" },
  }),
  async (c, next) => {
    const scopes = String(c.get("jwtPayload").scope ?? "").split(" ");
    if (!scopes.includes("items:read")) return problem(c, 403, "insufficient scope");
    if (!/^[0-9]{1,19}$/.test(c.req.param("id"))) return problem(c, 400, "id is not an integer");
    await next();
  },
  async (c, next) => {
    const consumer = String(c.get("jwtPayload").sub);
    const now = Date.now();
    const start = now - (now % WINDOW_MS);
    let w = windows.get(consumer);
    if (!w || w.start !== start) windows.set(consumer, (w = { start, count: 0 }));
    const reset = Math.ceil((start + WINDOW_MS - now) / 1000);
    if (w.count >= LIMIT) {
      c.header("retry-after", String(reset));
      return problem(c, 429, "rate limited");
    }
    w.count++;
    await next();
    c.res.headers.set("ratelimit-policy", `${LIMIT};w=${WINDOW_MS / 1000}`);
    c.res.headers.set("ratelimit", `limit=${LIMIT}, remaining=${LIMIT - w.count}, reset=${reset}`);
  },
  async (c) => {
    const headers = new Headers(c.req.raw.headers);
    headers.delete("cookie");
    headers.set("x-consumer", String(c.get("jwtPayload").sub));
    headers.set("x-route", "items");
    const res = await proxy(`${c.env.UPSTREAM}/items/${c.req.param("id")}`, { headers });
    res.headers.set("x-content-type-options", "nosniff");
    res.headers.delete("server");
    res.headers.delete("x-powered-by");
    return res;
  },
);

export default app;
