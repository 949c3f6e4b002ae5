/**
 * A local `redis-server` for tests and notebooks, set up as BullMQ needs: bound to 127.0.0.1, a
 * password, protected mode, `maxmemory-policy noeviction`, and persistence on (AOF, fsync every
 * second) in a folder of its own, so that a restart keeps the queue. Stopped with the process that
 * started it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { redisCommands, type QueueConnection } from "./connection.js";

/** TLS files of a `rediss://` server started by {@link startRedis}. */
export interface StartRedisTls {
  /** The server's certificate (PEM). */
  certFile: string;
  /** Its private key (PEM). */
  keyFile: string;
  /** The CA that signed the certificate (PEM); clients are given it as `tlsCa`. */
  caFile: string;
}

/** Options of {@link startRedis}. */
export interface StartRedisOptions {
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** The server binary (default `redis-server` from the PATH, or `JOINTLY_REDIS_SERVER`). */
  command?: string;
  /** How long to wait for the first PONG (default 10 000 ms). */
  timeoutMs?: number;
  /** The password (`--requirepass`); default: a random one, returned in `url` and `password`. */
  password?: string;
  /** Where the AOF is written; default: a new temporary folder, removed by `stop()`. */
  dir?: string;
  /** Serve TLS only (`--tls-port`, no plain port): `url` is then `rediss://` and `connection` carries the CA. */
  tls?: StartRedisTls;
  /** More `redis-server` arguments, after the defaults (so they override them), e.g. `["--maxmemory", "64mb"]`. */
  args?: string[];
}

/** A running local Redis started by {@link startRedis}. */
export interface LocalRedis {
  /** `redis://:PASSWORD@127.0.0.1:PORT` (`rediss://` with `tls`), ready for `submitJobs` and `startWorker`. */
  url: string;
  /** What to pass as `connection`: the URL, plus `tlsCa` for a TLS server. */
  connection: QueueConnection;
  host: "127.0.0.1";
  port: number;
  password: string;
  /** The folder holding the AOF. */
  dir: string;
  /** The server's process id (a new one after `restart`). */
  readonly pid: number;
  /** The exact `redis-server` arguments used (the password shown as ***). */
  args: string[];
  /**
   * Stop the server with `signal` (SIGTERM: a clean shutdown that flushes the AOF; SIGKILL: a crash,
   * up to a second of writes lost), wait `downMs` (default 0), and start it again on the same port
   * with the same folder, so it reloads its AOF. Resolves when it answers PING again.
   */
  restart(options?: { signal?: "SIGTERM" | "SIGKILL"; downMs?: number }): Promise<void>;
  /** Stop the server (SIGTERM, then SIGKILL after 3 s) and remove its folder if startRedis made it; safe to call twice. */
  stop(): Promise<void>;
}

const HOST = "127.0.0.1";

/** A port the kernel says is free on the loopback interface right now. */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error(`freeLoopbackPort: no port from ${JSON.stringify(address)}.`))));
    });
  });
}

/** True when the server answers AUTH + PING with +PONG. */
async function ping(connection: QueueConnection, timeoutMs = 500): Promise<boolean> {
  try {
    const replies = await redisCommands(connection, [["PING"]], timeoutMs);
    return replies[replies.length - 1] === "PONG";
  } catch {
    return false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** The server's arguments: the settings docs/queue.md recommends, on loopback. */
function serverArgs(port: number, password: string, dir: string, tls: StartRedisTls | undefined, extra: readonly string[]): string[] {
  return [
    ...(tls ? ["--port", "0", "--tls-port", String(port), "--tls-cert-file", tls.certFile, "--tls-key-file", tls.keyFile, "--tls-ca-cert-file", tls.caFile, "--tls-auth-clients", "no"] : ["--port", String(port)]),
    "--bind", HOST,
    "--protected-mode", "yes",
    "--requirepass", password,
    // BullMQ's requirement: never evict queue keys; a full memory makes writes fail instead.
    "--maxmemory-policy", "noeviction",
    // Persistence: every write in the AOF, fsynced once a second (a crash loses at most ~1 s).
    "--appendonly", "yes",
    "--appendfsync", "everysec",
    "--save", "",
    "--dir", dir,
    "--loglevel", "warning",
    ...extra,
  ];
}

/**
 * Start a real `redis-server` on 127.0.0.1 (`port: 0` picks a free port) with the settings BullMQ
 * needs: a password (random unless given), protected mode, `maxmemory-policy noeviction`, and
 * `--appendonly yes --appendfsync everysec` in its own folder. Waits until it answers PING and
 * returns its URL (with the password), `restart()` and `stop()`. The server is also killed when
 * this Node process exits. Throws a clear error when `redis-server` is not installed, or with the
 * server's own output when it fails to start.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<LocalRedis> {
  const { port: wanted = 0, timeoutMs = 10_000, tls, args: extra = [] } = options;
  const command = options.command ?? process.env.JOINTLY_REDIS_SERVER ?? "redis-server";
  if (!Number.isInteger(wanted) || wanted < 0 || wanted > 65535) throw new Error(`startRedis: port must be an integer in [0, 65535] (0 picks a free one), but got ${JSON.stringify(wanted)}.`);
  const password = options.password ?? randomBytes(18).toString("hex");
  if (typeof password !== "string" || password === "" || /\s/.test(password)) throw new Error(`startRedis: password must be a non-empty string without spaces, but got ${JSON.stringify(password)}.`);
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "jointly-redis-"));
  // A free port can be taken between the probe and the bind: retry a picked port a few times.
  const tries = wanted === 0 ? 3 : 1;
  let lastError: Error | undefined;
  for (let i = 0; i < tries; i++) {
    const port = wanted === 0 ? await freeLoopbackPort() : wanted;
    try {
      return await launch(command, port, password, dir, ownDir, tls, extra, timeoutMs);
    } catch (err) {
      lastError = err as Error;
      if ((err as { code?: string }).code === "ENOENT" || !/address already in use/i.test(lastError.message)) break;
    }
  }
  if (ownDir) rmSync(dir, { recursive: true, force: true });
  throw lastError as Error;
}

async function launch(command: string, port: number, password: string, dir: string, ownDir: boolean, tls: StartRedisTls | undefined, extra: readonly string[], timeoutMs: number): Promise<LocalRedis> {
  const args = serverArgs(port, password, dir, tls, extra);
  const url = `${tls ? "rediss" : "redis"}://:${password}@${HOST}:${port}`;
  const connection: QueueConnection = tls ? { url, tlsCa: tls.caFile } : url;
  let child = await spawnServer(command, args, port, connection, timeoutMs);
  // Never leave a server behind when the test or notebook process ends.
  const killOnExit = (): void => {
    child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);
  let stopped = false;
  return {
    url,
    connection,
    host: HOST,
    port,
    password,
    dir,
    get pid() {
      return child.pid as number;
    },
    args: args.map((a) => (a === password ? "***" : a)),
    async restart({ signal = "SIGTERM", downMs = 0 } = {}) {
      if (stopped) throw new Error(`restart: the Redis on port ${port} was stopped.`);
      child.kill(signal);
      if (!(await waitForExit(child, 5000))) {
        child.kill("SIGKILL");
        await waitForExit(child, 2000);
      }
      if (downMs > 0) await sleep(downMs);
      child = await spawnServer(command, args, port, connection, timeoutMs);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      process.removeListener("exit", killOnExit);
      await stopChild(child);
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  if (!(await waitForExit(child, 3000))) {
    child.kill("SIGKILL");
    await waitForExit(child, 2000);
  }
}

/** Spawn the server and wait for its PONG; throws with its output when it exits or stays silent. */
async function spawnServer(command: string, args: string[], port: number, connection: QueueConnection, timeoutMs: number): Promise<ChildProcess> {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  let failure: Error | undefined;
  child.once("error", (err) => {
    const code = (err as { code?: string }).code;
    failure =
      code === "ENOENT"
        ? Object.assign(new Error(`startRedis: "${command}" was not found on the PATH; install Debian's redis-server (sudo apt-get install redis-server) or set JOINTLY_REDIS_SERVER to the binary.`), { code })
        : new Error(`startRedis: could not run "${command}": ${err.message}`);
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (failure) break;
    if (child.exitCode !== null || child.signalCode !== null) {
      failure = new Error(`startRedis: ${command} on port ${port} exited (code ${child.exitCode}, signal ${child.signalCode}) before answering PING; its output: ${output.trim() || "(none)"}`);
      break;
    }
    if (await ping(connection)) return child;
    await sleep(50);
  }
  await stopChild(child);
  throw failure ?? new Error(`startRedis: ${command} on port ${port} did not answer PING within ${timeoutMs} ms; its output: ${output.trim() || "(none)"}`);
}
