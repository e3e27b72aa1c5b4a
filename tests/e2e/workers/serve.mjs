// Runs the built Portcullis worker on workerd through Miniflare's API, for the end-to-end
// suite and the load benchmark. Usage: node tests/e2e/workers/serve.mjs BUILD_DIR [PORT]
//
// Prints "ready http://127.0.0.1:PORT/" once it answers, then the worker's console.log lines
// (the access log) on stdout, one per line. Stops when its stdin closes or on SIGTERM.
import { Miniflare } from "miniflare";
import { workerOptions } from "./options.mjs";

const [buildDir, port = "0"] = process.argv.slice(2);
if (!buildDir) {
  console.error("usage: serve.mjs BUILD_DIR [PORT]");
  process.exit(2);
}

const mf = new Miniflare({
  ...workerOptions(buildDir, port),
  handleStructuredLogs({ level, message }) {
    (level === "error" || level === "warn" ? process.stderr : process.stdout).write(message + "\n");
  },
});

const url = await mf.ready;
console.log(`ready ${url}`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose();
  process.exit(0);
}
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
