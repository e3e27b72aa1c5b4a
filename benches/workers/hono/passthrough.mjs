// The JavaScript pass-through worker of the Hono comparison (benches/workers/hono.mjs): forwards
// every request to the `UPSTREAM` var with the same method, path, headers and body, as the Rust
// pass-through (benches/passthrough-worker) does. No policy at all.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(`${env.UPSTREAM}${url.pathname}${url.search}`, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      redirect: "manual",
    });
  },
};
