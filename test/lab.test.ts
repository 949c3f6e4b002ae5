import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { freeLoopbackPort } from "../src/queue/redis-server.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

test("npm run lab serves the notebooks with the project's tslab kernel", async () => {
  const port = await freeLoopbackPort();
  const token = randomBytes(12).toString("hex");
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "scripts/lab.ts", "--no-browser", "--ip=127.0.0.1", `--port=${port}`, `--NotebookApp.token=${token}`, `--ServerApp.token=${token}`],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  try {
    let specs: { kernelspecs?: Record<string, { spec: { argv: string[]; language: string } }> } | undefined;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !specs) {
      await new Promise((r) => setTimeout(r, 500));
      try {
        const res = await fetch(`http://127.0.0.1:${port}/api/kernelspecs?token=${token}`);
        if (res.ok) specs = (await res.json()) as typeof specs;
      } catch {
        // not listening yet
      }
    }
    assert.ok(specs, `the server did not answer within 60 s:\n${log}`);
    const tslab = specs.kernelspecs?.tslab;
    assert.ok(tslab, `no tslab kernel in ${JSON.stringify(Object.keys(specs.kernelspecs ?? {}))}`);
    assert.equal(tslab.spec.argv[0], `${ROOT}node_modules/.bin/tslab`);
    assert.equal(tslab.spec.language, "typescript");
    const contents = await (await fetch(`http://127.0.0.1:${port}/api/contents?token=${token}`)).json() as { content: { name: string }[] };
    assert.ok(contents.content.some((f) => f.name === "00-quickstart.ipynb"), "the server does not serve notebooks/");
  } finally {
    process.kill(-(child.pid as number), "SIGTERM");
  }
});
