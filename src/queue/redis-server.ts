/**
 * A throw-away `redis-server` for tests and notebooks: bound to 127.0.0.1, nothing written to disk,
 * stopped with the process that started it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";

/** Options of {@link startRedis}. */
export interface StartRedisOptions {
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** The server binary (default `redis-server` from the PATH, or `JOINTLY_REDIS_SERVER`). */
  command?: string;
  /** How long to wait for the first PONG (default 10 000 ms). */
  timeoutMs?: number;
}

/** A running local Redis started by {@link startRedis}. */
export interface LocalRedis {
  /** `redis://127.0.0.1:PORT`, ready for `submitJobs` and `startWorker`. */
  url: string;
  host: "127.0.0.1";
  port: number;
  /** The server's process id. */
  pid: number;
  /** Stop the server (SIGTERM, then SIGKILL after 3 s); safe to call twice. */
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

/** One PING over raw RESP: true when the server answers +PONG. */
function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: HOST, port });
    let answer = "";
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("error", () => done(false));
    socket.on("data", (chunk) => {
      answer += chunk.toString("latin1");
      if (answer.includes("\r\n")) done(answer.startsWith("+PONG"));
    });
    socket.once("connect", () => socket.write("PING\r\n"));
  });
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

/**
 * Start a real `redis-server` on 127.0.0.1 (`port: 0` picks a free port) with persistence off
 * (`--save "" --appendonly no`), wait until it answers PING and return its URL and a `stop()`.
 * The server is also killed when this Node process exits. Throws a clear error when `redis-server`
 * is not installed, or with the server's own output when it fails to start.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<LocalRedis> {
  const { port: wanted = 0, timeoutMs = 10_000 } = options;
  const command = options.command ?? process.env.JOINTLY_REDIS_SERVER ?? "redis-server";
  if (!Number.isInteger(wanted) || wanted < 0 || wanted > 65535) throw new Error(`startRedis: port must be an integer in [0, 65535] (0 picks a free one), but got ${JSON.stringify(wanted)}.`);
  // A free port can be taken between the probe and the bind: retry a picked port a few times.
  const tries = wanted === 0 ? 3 : 1;
  let lastError: Error | undefined;
  for (let i = 0; i < tries; i++) {
    const port = wanted === 0 ? await freeLoopbackPort() : wanted;
    try {
      return await launch(command, port, timeoutMs);
    } catch (err) {
      lastError = err as Error;
      if ((err as { code?: string }).code === "ENOENT" || !/address already in use/i.test(lastError.message)) throw err;
    }
  }
  throw lastError as Error;
}

async function launch(command: string, port: number, timeoutMs: number): Promise<LocalRedis> {
  const args = ["--port", String(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--dir", tmpdir(), "--loglevel", "warning"];
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
  // Never leave a server behind when the test or notebook process ends.
  const killOnExit = (): void => {
    child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);
  const cleanup = async (): Promise<void> => {
    process.removeListener("exit", killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    if (!(await waitForExit(child, 3000))) {
      child.kill("SIGKILL");
      await waitForExit(child, 2000);
    }
  };

  const deadline = Date.now() + timeoutMs;
  let failure: Error | undefined;
  spawnError.then((err) => {
    const code = (err as { code?: string }).code;
    failure =
      code === "ENOENT"
        ? Object.assign(new Error(`startRedis: "${command}" was not found on the PATH; install Debian's redis-server (sudo apt-get install redis-server) or set JOINTLY_REDIS_SERVER to the binary.`), { code })
        : new Error(`startRedis: could not run "${command}": ${err.message}`);
  });
  while (Date.now() < deadline) {
    if (failure) break;
    if (child.exitCode !== null || child.signalCode !== null) {
      failure = new Error(`startRedis: ${command} on port ${port} exited (code ${child.exitCode}, signal ${child.signalCode}) before answering PING; its output: ${output.trim() || "(none)"}`);
      break;
    }
    if (await ping(port)) {
      return {
        url: `redis://${HOST}:${port}`,
        host: HOST,
        port,
        pid: child.pid as number,
        stop: cleanup,
      };
    }
    await sleep(50);
  }
  await cleanup();
  throw failure ?? new Error(`startRedis: ${command} on port ${port} did not answer PING within ${timeoutMs} ms; its output: ${output.trim() || "(none)"}`);
}
