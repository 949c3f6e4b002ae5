/**
 * Redis used as BullMQ requires (issue 13): the server command, the start-up checks of
 * maxmemory-policy and persistence, fast failures on a wrong password or an unreachable server,
 * rediss:// with a CA file, a Redis restarted (SIGTERM, SIGKILL) mid-run with nothing lost, a full
 * memory that ends the wait with an error, and attempt counts that agree with the table.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { probeRedis, redisCommands } from "../src/queue/connection.js";
import { outcomeOf } from "../src/queue/producer.js";
import { freeLoopbackPort, parseWorkerArgs, queueStatus, startRedis, startWorker, submitJobs, type JobOutcome } from "../src/queue/index.js";
import { cleanupStack, spawnWorker, spec, withTimeout } from "./fixtures/queue-procs.js";

const REPO = new URL("..", import.meta.url).pathname;
// Workers (in process and children) and producers accept output folders under the temp folder.
process.env.JOINTLY_OUT_ROOT = tmpdir();

function tempDir(cleanup: (fn: () => unknown) => void, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("startRedis and docs/queue.md: persistence on, noeviction, protected mode and a password", { timeout: 30_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const redis = await startRedis();
  cleanup(() => redis.stop());
  const args = redis.args.join(" ");
  for (const want of ["--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction", "--protected-mode yes", "--requirepass ***", "--bind 127.0.0.1"]) assert.ok(args.includes(want), `${want} in ${args}`);
  assert.ok(!args.includes("--protected-mode no"));
  assert.match(redis.url, new RegExp(`^redis://:${redis.password}@127\\.0\\.0\\.1:${redis.port}$`));
  assert.ok(redis.password.length >= 24, "a generated password");
  // The server really runs with them.
  const replies = await redisCommands(redis.url, [["CONFIG", "GET", "appendonly"], ["CONFIG", "GET", "maxmemory-policy"], ["CONFIG", "GET", "protected-mode"], ["CONFIG", "GET", "appendfsync"]]);
  assert.deepEqual(replies, ["OK", ["appendonly", "yes"], ["maxmemory-policy", "noeviction"], ["protected-mode", "yes"], ["appendfsync", "everysec"]]);
  assert.deepEqual(await probeRedis(redis.url, 2000, "test", { warn: (l) => assert.fail(`unexpected warning: ${l}`) }), { maxmemoryPolicy: "noeviction", appendonly: true, savePoints: "", source: "CONFIG" });
  // A given password is used as given.
  const own = await startRedis({ password: "s3cret-pw" });
  cleanup(() => own.stop());
  assert.equal(own.url, `redis://:s3cret-pw@127.0.0.1:${own.port}`);

  // The documented command has the same settings, and no unprotected server.
  const docs = readFileSync(join(REPO, "docs/queue.md"), "utf8");
  assert.ok(!docs.includes("--protected-mode no"), "docs/queue.md still shows --protected-mode no");
  assert.ok(!/--appendonly no/.test(docs), "docs/queue.md still shows --appendonly no");
  const command = docs.split("\n").find((l) => l.startsWith("redis-server "));
  assert.ok(command, "docs/queue.md shows a redis-server command line");
  for (const want of ["--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction", "--requirepass"]) assert.ok(command.includes(want), `${want} in the documented command: ${command}`);
});

test("start-up checks: maxmemory-policy other than noeviction refused (or warned), persistence off warned, with the fix", { timeout: 60_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const redis = await startRedis({ args: ["--maxmemory-policy", "allkeys-lru"] });
  cleanup(() => redis.stop());
  const outDir = tempDir(cleanup, "jointly-qr-");
  const policy = /maxmemory-policy allkeys-lru, but BullMQ needs noeviction.*CONFIG SET maxmemory-policy noeviction.*"maxmemory-policy noeviction" in redis\.conf/;
  await assert.rejects(submitJobs([spec("p0", 0, outDir)], { connection: redis.url, queueName: "qr-checks", outRoots: [outDir] }), new RegExp(`^Error: submitJobs: refusing to start: Redis at redis://127\\.0\\.0\\.1:${redis.port} has ${policy.source}`));
  await assert.rejects(startWorker({ connection: redis.url, queueName: "qr-checks", log: false }), new RegExp(`startWorker: refusing to start: .*${policy.source}`));
  // Nothing was enqueued by the refused producer.
  assert.deepEqual(await redisCommands(redis.url, [["KEYS", "bull:qr-checks:*"]]), ["OK", []]);

  // With checks "warn" both start and say it loudly; a run completes.
  const warnings: string[] = [];
  const worker = await startWorker({ connection: redis.url, queueName: "qr-checks", redisChecks: "warn", log: (l) => warnings.push(l), name: "warned" });
  cleanup(() => worker.close({ release: true }));
  assert.ok(warnings.some((l) => /^\[worker warned\] startWorker: WARNING! .*allkeys-lru.*Going on because redisChecks is "warn"/.test(l)), warnings.join("\n"));
  const producerWarnings: string[] = [];
  const table = await submitJobs([spec("p0", 0, outDir, 3)], { connection: redis.url, queueName: "qr-checks", redisChecks: "warn", onWarning: (l) => producerWarnings.push(l), outRoots: [outDir], timeoutMs: 30_000 });
  assert.equal(table.array("status")[0], "ok", String(table.array("error")[0]));
  assert.equal(producerWarnings.length, 1, producerWarnings.join("\n"));
  assert.match(producerWarnings[0], /submitJobs: WARNING! .*allkeys-lru/);

  // Persistence off: a warning with the fix, not a refusal.
  await redisCommands(redis.url, [["CONFIG", "SET", "maxmemory-policy", "noeviction"], ["CONFIG", "SET", "appendonly", "no"], ["CONFIG", "SET", "save", ""]]);
  const off: string[] = [];
  await probeRedis(redis.url, 2000, "submitJobs", { warn: (l) => off.push(l) });
  assert.equal(off.length, 1);
  assert.match(off[0], /persistence off \(appendonly no, no save points\): a Redis restart loses every queued job.*CONFIG SET appendonly yes.*"appendonly yes" and "appendfsync everysec" in redis\.conf/);
  // Save points alone count as persistence.
  await redisCommands(redis.url, [["CONFIG", "SET", "save", "60 1"]]);
  await probeRedis(redis.url, 2000, "submitJobs", { warn: (l) => assert.fail(l) });

  // CONFIG disabled (as on managed services): INFO tells the policy and the AOF.
  const noConfig = await startRedis({ args: ["--maxmemory-policy", "volatile-lru", "--appendonly", "no", "--rename-command", "CONFIG", ""] });
  cleanup(() => noConfig.stop());
  await assert.rejects(probeRedis(noConfig.url, 2000, "startWorker"), /refusing to start: .*maxmemory-policy volatile-lru/);
  const infoWarnings: string[] = [];
  assert.equal((await probeRedis(noConfig.url, 2000, "startWorker", { checks: "warn", warn: (l) => infoWarnings.push(l) })).source, "INFO");
  assert.equal(infoWarnings.length, 2, infoWarnings.join("\n"));
  assert.match(infoWarnings[1], /persistence off \(appendonly no; save points unknown, CONFIG is disabled\)/);
});

test("a wrong or missing password, or no Redis, fails within seconds naming host:port", { timeout: 60_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const redis = await startRedis();
  cleanup(() => redis.stop());
  const outDir = tempDir(cleanup, "jointly-qr-");
  const hostPort = `127\\.0\\.0\\.1:${redis.port}`;
  const wrong = redis.url.replace(redis.password, "not-the-password");
  const timed = async (run: () => Promise<unknown>, pattern: RegExp, ms: number): Promise<void> => {
    const t0 = Date.now();
    await assert.rejects(run(), pattern);
    assert.ok(Date.now() - t0 < ms, `took ${Date.now() - t0} ms`);
  };
  await timed(() => submitJobs([spec("a0", 0, outDir)], { connection: wrong, outRoots: [outDir] }), new RegExp(`submitJobs: authentication failed at Redis redis://${hostPort}: WRONGPASS`), 2000);
  await timed(() => startWorker({ connection: wrong, log: false }), new RegExp(`startWorker: authentication failed at Redis redis://${hostPort}: WRONGPASS`), 2000);
  await timed(() => startWorker({ connection: `redis://127.0.0.1:${redis.port}`, log: false }), new RegExp(`startWorker: authentication failed at Redis redis://${hostPort}: it needs a password and none was given \\(NOAUTH`), 2000);
  await timed(() => queueStatus({ host: "127.0.0.1", port: redis.port, password: "nope" }), /attachQueue: authentication failed/, 2000);

  // Nothing listening: a bounded number of retries, then "connection refused".
  const nobody = await freeLoopbackPort();
  await timed(
    () => submitJobs([spec("a0", 0, outDir)], { connection: `redis://127.0.0.1:${nobody}`, outRoots: [outDir], connectTimeoutMs: 2000 }),
    new RegExp(`submitJobs: cannot reach Redis at redis://127\\.0\\.0\\.1:${nobody} \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${nobody}: connection refused; [2-9] tries in [12]\\.\\d s\\)`),
    3500,
  );
  await timed(() => startWorker({ connection: `redis://127.0.0.1:${nobody}`, log: false }), /startWorker: cannot reach Redis .*connection refused; \d+ tries in [1-5]\.\d s/, 6500);

  // The worker command line exits with the message, not retrying forever.
  const cli = spawnWorker("badpw", ["--redis", wrong]);
  cleanup(() => cli.kill());
  assert.deepEqual(await withTimeout(cli.exited, 45_000, "worker with a wrong password"), { code: 2, signal: null });
  assert.ok(cli.lines.some((l) => new RegExp(`^startWorker: authentication failed at Redis redis://${hostPort}: WRONGPASS`).test(l)), cli.lines.join("\n"));
  assert.ok(!cli.lines.some((l) => l.includes("not-the-password")), "the password is not printed");
});

test("outDir confined on the producer's side too", async (t) => {
  const cleanup = cleanupStack(t);
  const root = tempDir(cleanup, "jointly-qr-root-");
  // Validation happens before any connection: nothing listens on port 1.
  await assert.rejects(submitJobs([spec("c0", 0, join(root, "ok")), spec("c1", 1, `${root}/allowed/../../escape`)], { connection: "redis://127.0.0.1:1", outRoots: [root] }), (err: Error) => {
    assert.match(err.message, /^submitJobs: spec #1 \(id "c1"\): The output folder ".*allowed\/\.\.\/\.\.\/escape" resolves to .*escape, which is outside the allowed output root/);
    return true;
  });
  // Inside the root the check passes and the producer goes on to connect.
  await assert.rejects(submitJobs([spec("c0", 0, join(root, "ok"))], { connection: "redis://127.0.0.1:1", outRoots: [root], connectTimeoutMs: 300 }), /cannot reach Redis/);
  assert.ok(!existsSync(join(root, "..", "escape")));
});

test("attempt counts in the message agree with the attempts column", () => {
  // A job killed twice with maxStalledCount 1: two starts ended by a dead worker, then the third
  // start fails it at once; BullMQ counts attemptsMade 1 (the old message said "1 of 3").
  const killedTwice = { id: "k", attemptsStarted: 3, attemptsMade: 1, stalledCounter: 2, processedBy: "w3", returnvalue: null, failedReason: "job stalled more than allowable limit", opts: { attempts: 3 } };
  const o = outcomeOf(killedTwice as never, "failed", 3);
  assert.equal(o.attempts, 3);
  assert.match(o.error as string, /^failed after 3 of 3 attempts: job stalled more than allowable limit \(its worker died or stopped renewing its lock 2 times/);
  // More starts than attempts allowed (stalls do not use one up): no "4 of 3".
  const more = outcomeOf({ ...killedTwice, attemptsStarted: 4, attemptsMade: 3, stalledCounter: 1, failedReason: "boom" } as never, "failed", 3);
  assert.equal(more.attempts, 4);
  assert.match(more.error as string, /^failed after 4 attempts \(3 allowed; starts ended by a dead worker do not use one up\): boom/);
  const plain = outcomeOf({ ...killedTwice, attemptsStarted: 3, attemptsMade: 3, stalledCounter: 0, failedReason: "bad column" } as never, "failed", 3);
  assert.equal(plain.error, "failed after 3 of 3 attempts: bad column");
});

test("a job whose worker is SIGKILLed twice: its message and its attempts column agree", { timeout: 150_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const redis = await startRedis();
  cleanup(() => redis.stop());
  const outDir = tempDir(cleanup, "jointly-qr-kill2-");
  const queueName = "qr-kill2";
  const args = ["--redis", redis.url, "--queue", queueName, "--lock-duration", "3000", "--stalled-interval", "1000", "--max-stalled", "1"];
  const workers = ["k1", "k2", "k3"].map((n) => spawnWorker(n, args));
  cleanup(async () => {
    if (process.env.JOINTLY_QUEUE_LOGS) for (const w of workers) console.log(`--- ${w.name}\n${w.lines.join("\n")}`);
    for (const w of workers) await w.kill();
  });
  await Promise.all(workers.map((w) => w.waitFor(/ready on queue/, 60_000)));
  const killed: string[] = [];
  const table = await submitJobs([spec("k", 0, outDir, 20_000)], {
    connection: redis.url,
    queueName,
    attempts: 3,
    pollMs: 500,
    timeoutMs: 90_000,
    outRoots: [outDir],
    onProgress: (p) => {
      // Kill whichever worker trains it, twice.
      if (killed.length >= 2 || killed.includes(p.worker)) return;
      killed.push(p.worker);
      workers.find((w) => w.name === p.worker)?.child.kill("SIGKILL");
    },
  });
  assert.equal(killed.length, 2, `killed ${killed.join(", ")}`);
  const row = table.objects()[0] as Record<string, unknown>;
  assert.equal(row.status, "failed");
  assert.equal(row.stalls, 2);
  // The message counts what the column counts (before the fix: "failed after 1 of 3 attempts" with attempts 3).
  assert.match(row.error as string, new RegExp(`^failed after ${row.attempts} of 3 attempts: job stalled more than allowable limit`));
  assert.equal(row.attempts, 3);
  const third = workers.find((w) => !killed.includes(w.name)) as (typeof workers)[number];
  const line = await third.waitFor(/failed job k \(attempt (\d+) of 3, final\)/, 5000);
  assert.equal(Number(line[1]), row.attempts, "the worker's log line agrees too");
});

test("worker CLI: --tls-ca and --redis-checks", () => {
  const parsed = parseWorkerArgs(["--redis", "rediss://:pw@h:6380", "--tls-ca", "/etc/ca.pem", "--redis-checks", "warn"], {});
  assert.ok(parsed !== "help");
  assert.deepEqual(parsed.connection, { url: "rediss://:pw@h:6380", tlsCa: "/etc/ca.pem" });
  assert.equal(parsed.redisChecks, "warn");
  const fromEnv = parseWorkerArgs([], { JOINTLY_REDIS_URL: "rediss://h:6380", JOINTLY_REDIS_TLS_CA: "/ca.pem" });
  assert.ok(fromEnv !== "help");
  assert.deepEqual(fromEnv.connection, { url: "rediss://h:6380", tlsCa: "/ca.pem" });
  assert.throws(() => parseWorkerArgs(["--redis", "redis://:pw@h:6379", "--tls-ca", "/ca.pem"], {}), /--tls-ca is for a TLS connection, but the Redis URL is not rediss:\/\/ \(got "redis:\/\/:\*\*\*@h:6379"\)/);
  assert.throws(() => parseWorkerArgs(["--redis-checks", "maybe"], {}), /--redis-checks must be refuse or warn, but got "maybe"/);
});

test("rediss:// with a private CA given as a file (no NODE_EXTRA_CA_CERTS)", { timeout: 60_000 }, async (t) => {
  // Certificates are made with the openssl command (Node cannot write X.509); without it, say so.
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
  } catch {
    t.skip("the openssl command is not installed (apt-get install openssl): no certificates to test rediss:// with");
    return;
  }
  const cleanup = cleanupStack(t);
  const dir = tempDir(cleanup, "jointly-qr-tls-");
  const f = (name: string): string => join(dir, name);
  const openssl = (...args: string[]): void => void execFileSync("openssl", args, { stdio: "ignore" });
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.crt"), "-days", "1", "-subj", "/CN=jointly test CA");
  openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=localhost");
  writeFileSync(f("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl("x509", "-req", "-in", f("server.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("server.crt"), "-days", "1", "-extfile", f("ext.cnf"));
  // The CA is nowhere Node looks by itself (NODE_EXTRA_CA_CERTS is at most the system bundle).
  assert.ok(!(process.env.NODE_EXTRA_CA_CERTS ?? "").startsWith(dir));

  let redis: Awaited<ReturnType<typeof startRedis>>;
  try {
    redis = await startRedis({ tls: { certFile: f("server.crt"), keyFile: f("server.key"), caFile: f("ca.crt") } });
  } catch (err) {
    // A redis-server built without TLS rejects the tls-* directives.
    if (/Bad directive|wrong number of arguments|not supported/i.test((err as Error).message) && /tls/i.test((err as Error).message)) {
      t.skip(`this redis-server has no TLS support: ${(err as Error).message.slice(0, 200)}`);
      return;
    }
    throw err;
  }
  cleanup(() => redis.stop());
  assert.match(redis.url, /^rediss:\/\//);
  const outDir = tempDir(cleanup, "jointly-qr-");

  // Without the CA: a clear TLS error naming the option, at once.
  const t0 = Date.now();
  await assert.rejects(submitJobs([spec("t0", 0, outDir)], { connection: redis.url, outRoots: [outDir] }), new RegExp(`submitJobs: TLS with Redis at rediss://127\\.0\\.0\\.1:${redis.port} failed: .*(self.signed|unable to verify|SELF_SIGNED|UNABLE_TO).*--tls-ca FILE on the worker, tlsCa: FILE`, "i"));
  assert.ok(Date.now() - t0 < 2000);
  // Plain redis:// to the TLS port: bounded, not forever.
  await assert.rejects(probeRedis(`redis://:${redis.password}@127.0.0.1:${redis.port}`, 1000, "startWorker", { checks: "skip" }), /startWorker: cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+/);
  await assert.rejects(startWorker({ connection: { url: redis.url, tlsCa: f("missing.pem") }, log: false }), /cannot read the TLS CA file ".*missing\.pem" \(ENOENT/);

  // With the CA file: a worker and the producer train a job over TLS.
  const worker = await startWorker({ connection: { url: redis.url, tlsCa: f("ca.crt") }, queueName: "qr-tls", log: false, name: "tls" });
  cleanup(() => worker.close({ release: true }));
  const table = await submitJobs([spec("t0", 0, outDir, 3)], { connection: { url: redis.url, tlsCa: f("ca.crt") }, queueName: "qr-tls", outRoots: [outDir], timeoutMs: 30_000 });
  assert.equal(table.array("status")[0], "ok", String(table.array("error")[0]));
  assert.equal(table.array("worker")[0], "tls");
  // The PEM text itself works too (tls: { ca }).
  assert.equal((await probeRedis({ url: redis.url, tls: { ca: readFileSync(f("ca.crt"), "utf8") } }, 2000, "test")).maxmemoryPolicy, "noeviction");
});

test("Redis restarted mid-run (SIGTERM, then SIGKILL) with 20 jobs and two workers: 0 lost, 0 duplicated", { timeout: 240_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const redis = await startRedis();
  cleanup(() => redis.stop());
  const outDir = tempDir(cleanup, "jointly-qr-outage-");
  const queueName = "qr-outage";
  const workerArgs = ["--redis", redis.url, "--queue", queueName, "--lock-duration", "4000", "--stalled-interval", "1000", "--max-stalled", "5", "--grace", "2000"];
  const workers = [spawnWorker("o1", workerArgs), spawnWorker("o2", workerArgs)];
  cleanup(async () => {
    if (process.env.JOINTLY_QUEUE_LOGS) for (const w of workers) console.log(`--- ${w.name}\n${w.lines.join("\n")}`);
    for (const w of workers) await w.kill();
  });
  await Promise.all(workers.map((w) => w.waitFor(/ready on queue/, 60_000)));

  const specs = Array.from({ length: 20 }, (_, i) => spec(`j${i}`, i, outDir, 30));
  const results: JobOutcome[] = [];
  const restarts: string[] = [];
  let restarting: Promise<void> = Promise.resolve();
  const table = await submitJobs(specs, {
    connection: redis.url,
    queueName,
    attempts: 3,
    backoff: 200,
    pollMs: 500,
    timeoutMs: 180_000,
    redisOutageMs: 30_000,
    outRoots: [outDir],
    onResult: (o, { done }) => {
      results.push(o);
      const signal = done === 5 ? "SIGTERM" : done === 12 ? "SIGKILL" : undefined;
      if (signal) {
        restarting = restarting.then(async () => {
          const before = redis.pid;
          // Down 1.5 s after SIGTERM (locks survive), 6 s after SIGKILL (past the 4 s locks: running jobs
          // are taken back as stalled and trained again, still reported once).
          await redis.restart({ signal, downMs: signal === "SIGTERM" ? 1500 : 6000 });
          restarts.push(`${signal} at ${done}: pid ${before} -> ${redis.pid}`);
        });
      }
    },
  });
  await restarting;
  assert.equal(restarts.length, 2, restarts.join("; "));

  // One outcome per id, every one ok, each model on disk.
  const ids = specs.map((s) => s.id);
  assert.deepEqual(table.array("id"), ids);
  assert.deepEqual(results.map((r) => r.id).sort(), [...ids].sort(), "onResult once per id");
  const rows = table.objects() as Record<string, unknown>[];
  const notOk = rows.filter((r) => r.status !== "ok");
  assert.equal(notOk.length, 0, `lost: ${JSON.stringify(notOk.map((r) => [r.id, r.status, r.error]))}`);
  for (const r of rows) assert.ok(existsSync(join(outDir, r.id as string, "model.json")), `${r.id} model`);
  // Redis agrees once any re-run of a job whose completion the SIGKILL lost has finished too.
  let counts = await queueStatus(redis.url, queueName);
  for (let i = 0; i < 60 && counts.completed < 20; i++) {
    await new Promise((r) => setTimeout(r, 500));
    counts = await queueStatus(redis.url, queueName);
  }
  assert.deepEqual(counts, { waiting: 0, active: 0, delayed: 0, completed: 20, failed: 0 });
  const finishedLines = workers.flatMap((w) => w.lines.filter((l) => /finished job j\d+ /.test(l)));
  console.log(`# outage run: ${restarts.join("; ")}; ${finishedLines.length} trainings finished for 20 jobs; stalls ${rows.reduce((n, r) => n + (r.stalls as number), 0)}`);
});

test("Redis gone for good mid-run: the producer stops after redisOutageMs with an error naming it", { timeout: 60_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const redis = await startRedis();
  cleanup(() => redis.stop());
  const outDir = tempDir(cleanup, "jointly-qr-gone-");
  // No worker: the jobs wait, then Redis goes away and stays away.
  let stoppedAt = 0;
  const run = submitJobs([spec("g0", 0, outDir), spec("g1", 1, outDir)], { connection: redis.url, queueName: "qr-gone", pollMs: 500, redisOutageMs: 3000, outRoots: [outDir] });
  setTimeout(() => void redis.stop().then(() => (stoppedAt = Date.now())), 1500);
  await assert.rejects(withTimeout(run, 30_000, "submitJobs with Redis gone"), new RegExp(`^Error: submitJobs: lost Redis at redis://127\\.0\\.0\\.1:${redis.port} for [3-6]\\.\\d s \\(redisOutageMs 3000; last error: .*\\), 0 of 2 jobs finished; the others stay queued`));
  assert.ok(stoppedAt > 0 && Date.now() - stoppedAt < 8000, `gave up ${Date.now() - stoppedAt} ms after Redis stopped`);
});

test("Redis memory full mid-run with noeviction: the producer ends with the OOM error, not a hang", { timeout: 90_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const redis = await startRedis();
  cleanup(() => redis.stop());
  const outDir = tempDir(cleanup, "jointly-qr-oom-");
  const queueName = "qr-oom";
  const worker = await startWorker({ connection: redis.url, queueName, log: false, name: "oom" });
  cleanup(() => withTimeout(worker.close({ release: true }), 10_000, "worker close").catch(() => worker.worker.disconnect()));
  cleanup(() => redisCommands(redis.url, [["CONFIG", "SET", "maxmemory", "0"]]));
  let fullAt = 0;
  const specs = Array.from({ length: 20 }, (_, i) => spec(`o${i}`, i, outDir, 40));
  const t0 = Date.now();
  const run = submitJobs(specs, {
    connection: redis.url,
    queueName,
    pollMs: 500,
    redisOutageMs: 4000,
    outRoots: [outDir],
    onResult: (_o, { done }) => {
      if (done === 3 && !fullAt) {
        fullAt = Date.now();
        // Between two jobs (a finishing job's script fetches the next one and gets through a full
        // Redis), the memory fills: any used memory is above maxmemory 1, and the worker's next
        // fetch is refused with OOM, so nothing more can finish.
        void (async () => {
          await worker.worker.pause();
          await redisCommands(redis.url, [["CONFIG", "SET", "maxmemory", "1"]]);
          worker.worker.resume();
        })();
      }
    },
  });
  await assert.rejects(withTimeout(run, 60_000, "submitJobs with a full Redis"), (err: Error) => {
    assert.match(err.message, new RegExp(`^submitJobs: Redis at redis://127\\.0\\.0\\.1:${redis.port} is out of memory \\(OOM command not allowed when used memory > 'maxmemory'.*\\); with maxmemory-policy noeviction it refuses writes.*CONFIG SET maxmemory.*Gave up after [4-9]\\.\\d s of refused writes and [4-9]\\.\\d s without a job finishing \\(redisOutageMs 4000\\), ([3-9]|1\\d) of 20 jobs finished`));
    return true;
  });
  assert.ok(fullAt > 0, "the memory was filled mid-run");
  const waited = Date.now() - fullAt;
  assert.ok(waited < 15_000, `the producer gave up ${waited} ms after the memory filled (run ${Date.now() - t0} ms)`);
});
