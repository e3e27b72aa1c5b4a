// A JavaScript pass-through worker that also does, by the letters of its STEPS var, one or more
// of the things Portcullis's Workers adapter does with platform objects on a proxied request, so
// benches/workers/platform-costs.mjs can price each one in the runtime's CPU time:
//   r  read the request's headers (one iteration) and build new `Headers` for the upstream
//      with three more (x-forwarded-for, x-request-id, traceparent), by `append`
//   a  an `AbortController` whose signal goes with the upstream fetch
//   t  a head timer (set, then cleared) and an idle timer, as the adapter's timers
//   w  read the upstream's headers and answer with a new `Response` over its body, with new
//      `Headers` (theirs and x-request-id, by `append`)
//   x  answer with `new Response(body, upstreamResponse)` and one header set (no read, no build)
//   l  one access-log-sized line through `console.log` once the answer has gone (`waitUntil`)
// With no letter ("-") it is the plain pass-through.
const flat = (headers) => {
  const parts = [];
  for (const [n, v] of headers) parts.push(n, v);
  return parts.join("\0");
};
const build = (f) => {
  const h = new Headers();
  const p = f.split("\0");
  for (let i = 0; i + 1 < p.length; i += 2) h.append(p[i], p[i + 1]);
  return h;
};
const added = ["x-forwarded-for", "198.51.100.7", "x-request-id", "abcdef0123456789", "traceparent", "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"];
const line = JSON.stringify({ ts_ms: 0, request_id: "abcdef0123456789", route: "items", status: 200, pad: "x".repeat(400) });

export default {
  async fetch(request, env, ctx) {
    const s = env.STEPS;
    const url = new URL(request.url);
    let headers = request.headers;
    if (s.includes("r")) headers = build([flat(request.headers), ...added].join("\0"));
    const init = { method: request.method, headers, redirect: "manual" };
    let abort;
    let timer;
    if (s.includes("a")) {
      abort = new AbortController();
      init.signal = abort.signal;
    }
    if (s.includes("t")) timer = setTimeout(() => abort?.abort(), 5000);
    const res = await fetch(`${env.UPSTREAM}${url.pathname}${url.search}`, init);
    if (s.includes("t")) {
      clearTimeout(timer);
      setTimeout(() => abort?.abort(), 5000);
    }
    if (s.includes("l")) ctx.waitUntil(new Promise((done) => setTimeout(() => { console.log(line); done(); }, 0)));
    if (s.includes("w")) {
      return new Response(res.body, { status: res.status, headers: build(`${flat(res.headers)}\0x-request-id\0abcdef0123456789`) });
    }
    if (s.includes("x")) {
      const out = new Response(res.body, res);
      out.headers.set("x-request-id", "abcdef0123456789");
      return out;
    }
    return res;
  },
};
