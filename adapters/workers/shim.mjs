// The worker's entry module (wrangler.toml `main`, copied next to the build by
// `portcullis-build`): the Rust handlers, compiled to wasm with wasm-bindgen's glue in index.js,
// as the Workers runtime calls them. wrangler bundles it with the glue.
//
// A panic aborts the wasm instance (`panic = "abort"`). The glue was built with a reset-state
// function and an abort handler, and the `worker` crate asks for a fresh instance on abort: the
// next call starts one, and the `worker` crate counts instances in `__worker_init_state`. Objects
// made by an earlier instance are stale, so the Durable Object below makes its Rust half again
// when the count moves.
//
// The gateway is built here, at the module's top level, from the worker's `env`: Workers runs
// this while it starts the isolate (during the client's TLS handshake), not on the first request.
import { DurableObject, WorkerEntrypoint, env } from "cloudflare:workers";
import * as wasm from "./index.js";

const instances = wasm.__worker_init_state();
try {
  if (env) wasm.startGateway(env);
} catch (e) {
  // the first request builds it instead (and reports why it cannot)
  console.error("portcullis: building the gateway at start-up failed:", e);
}

export default class Portcullis extends WorkerEntrypoint {
  fetch(request) {
    return wasm.fetch(request, this.env, this.ctx);
  }
}

/// One exact rate-limit counter per key (adapters/workers/src/limiter.rs).
export class RateLimiter extends DurableObject {
  #limiter = null;
  #made = -1;

  #rust() {
    if (this.#made !== instances.instanceId) {
      this.#limiter = new wasm.RateLimiter(this.ctx, this.env);
      this.#made = instances.instanceId;
    }
    return this.#limiter;
  }

  // the worker's admissions, by JavaScript RPC (adapters/workers/src/limiter.rs)
  admit(request) {
    return this.#rust().admit(request);
  }

  // the worker gives back an admission its route's other limit refused
  refund(request) {
    return this.#rust().refund(request);
  }

  // the object's state and counts, for tests and operators
  fetch(request) {
    return this.#rust().fetch(request);
  }

  alarm() {
    return this.#rust().alarm();
  }
}
