/** Where the job queue's Redis is, in the forms the producer, the workers and the CLI accept. */
import type { ConnectionOptions } from "bullmq";
import { fileURLToPath } from "node:url";

/** What {@link loadBullMQ} throws when the optional peer dependency bullmq is not installed. */
export const BULLMQ_MISSING = "the job queue needs the optional package bullmq: npm install bullmq";

/**
 * BullMQ (and ioredis under it), loaded on first use: everything that imports jointly, every
 * notebook included, would otherwise pay for loading them at start-up. bullmq is an optional peer
 * dependency (a plain library install does not need Redis), so its absence is reported as
 * {@link BULLMQ_MISSING}, with Node's resolution error as the cause.
 */
export async function loadBullMQ(): Promise<typeof import("bullmq")> {
  try {
    return await import("bullmq");
  } catch (e) {
    if (isMissingPackage(e, "bullmq")) throw new Error(`${BULLMQ_MISSING} (not found from ${fileURLToPath(import.meta.url)}).`, { cause: e });
    throw e;
  }
}

/** True for Node's "cannot find package NAME" (ESM) or "cannot find module NAME" (CommonJS) errors about `name` itself, not about a file inside it or one of its own dependencies. */
function isMissingPackage(e: unknown, name: string): boolean {
  const err = e as { code?: unknown; message?: unknown } | null;
  if (err === null || typeof err !== "object") return false;
  if (err.code !== "ERR_MODULE_NOT_FOUND" && err.code !== "MODULE_NOT_FOUND") return false;
  const message = String(err.message);
  return message.includes(`'${name}'`) || message.includes(`"${name}"`);
}

/** A Redis URL (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS), `{ url }`, or host and port. */
export type QueueConnection =
  | string
  | { url: string }
  | { host: string; port: number; username?: string; password?: string; db?: number };

/** The queue every producer and worker uses unless told otherwise. */
export const DEFAULT_QUEUE_NAME = "jointly-train";

/**
 * Turn a {@link QueueConnection} into BullMQ/ioredis connection options. Throws, naming the value,
 * for a URL that is not `redis://` or `rediss://`, or a port outside [1, 65535].
 */
export function connectionOptions(connection: QueueConnection): ConnectionOptions {
  if (typeof connection === "string") return fromUrl(connection);
  if (connection === null || typeof connection !== "object") throw new Error(`Queue connection must be a Redis URL or { host, port }, but got ${JSON.stringify(connection)}.`);
  if ("url" in connection) return fromUrl(connection.url);
  const { host, port, username, password, db } = connection;
  if (typeof host !== "string" || host === "") throw new Error(`Queue connection host must be a non-empty string, but got ${JSON.stringify(host)}.`);
  checkPort(port, JSON.stringify(connection));
  return { host, port, ...(username ? { username } : {}), ...(password ? { password } : {}), ...(db !== undefined ? { db } : {}) };
}

function checkPort(port: unknown, where: string): asserts port is number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`Queue connection port must be an integer in [1, 65535], but got ${JSON.stringify(port)} (in ${where}).`);
}

function fromUrl(url: string): ConnectionOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`Queue connection URL is not a URL: ${JSON.stringify(url)} (expected redis://host:6379).`);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") throw new Error(`Queue connection URL must start with redis:// or rediss://, but got ${JSON.stringify(url)}.`);
  const port = parsed.port === "" ? 6379 : Number(parsed.port);
  checkPort(port, JSON.stringify(url));
  const dbText = parsed.pathname.replace(/^\//, "");
  const db = dbText === "" ? undefined : Number(dbText);
  if (db !== undefined && (!Number.isInteger(db) || db < 0)) throw new Error(`Queue connection URL's database must be a number like /0, but got ${JSON.stringify(parsed.pathname)} in ${JSON.stringify(url)}.`);
  // URL keeps IPv6 hosts in brackets; ioredis wants them bare.
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
  return {
    host,
    port,
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(db !== undefined ? { db } : {}),
    ...(parsed.protocol === "rediss:" ? { tls: {} } : {}),
  };
}

/** The connection as text for logs and errors, without its password. */
export function describeConnection(connection: QueueConnection): string {
  const o = connectionOptions(connection) as { host?: string; port?: number; db?: number; tls?: object };
  return `${o.tls ? "rediss" : "redis"}://${o.host}:${o.port}${o.db !== undefined ? `/${o.db}` : ""}`;
}

/**
 * Check that something accepts TCP (or TLS, for `rediss://`) connections at the connection's host
 * and port within `timeoutMs`; throws naming the address otherwise. BullMQ itself would retry
 * forever, so the producer and workers call this first to fail fast on a wrong address.
 */
export async function probeRedis(connection: QueueConnection, timeoutMs: number, who: string): Promise<void> {
  // Every queue function probes first: a missing bullmq is reported before any Redis address is tried.
  await loadBullMQ();
  const o = connectionOptions(connection) as { host: string; port: number; tls?: object };
  const { createConnection } = await import("node:net");
  const { connect: tlsConnect } = await import("node:tls");
  await new Promise<void>((resolve, reject) => {
    const socket = o.tls ? tlsConnect({ host: o.host, port: o.port, servername: o.host }) : createConnection({ host: o.host, port: o.port });
    const fail = (why: string): void => {
      socket.destroy();
      reject(new Error(`${who}: cannot reach Redis at ${describeConnection(connection)} (${why}); is redis-server running there and reachable from this machine?`));
    };
    socket.setTimeout(timeoutMs, () => fail(`no answer within ${timeoutMs} ms`));
    socket.once("error", (err) => fail(err.message));
    socket.once(o.tls ? "secureConnect" : "connect", () => {
      socket.end();
      resolve();
    });
  });
}
