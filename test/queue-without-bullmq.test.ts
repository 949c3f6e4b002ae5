// bullmq is an optional peer dependency: without it every queue entry point must say so (before
// trying any Redis address), with Node's resolution error as the cause. The child process runs
// with resolution hooks that make bullmq unresolvable (test/fixtures/no-bullmq); the consumer
// install test checks the same thing in a real project without bullmq.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";

const REPO = new URL("..", import.meta.url).pathname;

test("queue functions without bullmq throw 'the job queue needs the optional package bullmq'", () => {
  const out = execFileSync(process.execPath, ["--import", "tsx", "--import", "./test/fixtures/no-bullmq/register.mjs", "test/fixtures/no-bullmq/run.ts"], { cwd: REPO, encoding: "utf8" });
  const results = out.trim().split("\n").map((l) => JSON.parse(l) as { name: string; threw: boolean; message?: string; cause?: string });
  assert.deepEqual(results.map((r) => r.name), ["submitJobs", "startWorker", "attachQueue", "queueStatus"]);
  for (const r of results) {
    assert.equal(r.threw, true, r.name);
    assert.ok(r.message?.startsWith("the job queue needs the optional package bullmq: npm install bullmq (not found from "), `${r.name}: ${r.message}`);
    assert.match(r.cause ?? "", /Cannot find package 'bullmq'/, r.name);
  }
});

test("with bullmq installed the queue module loads it", async () => {
  const { loadBullMQ } = await import("../src/queue/connection.js");
  const bullmq = await loadBullMQ();
  assert.equal(typeof bullmq.Queue, "function");
});
