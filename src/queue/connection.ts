/** Where the job queue's Redis is, in the forms the producer, the workers and the CLI accept. */
import type { ConnectionOptions } from "bullmq";
import { readFileSync } from "node:fs";
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

/** TLS settings for a `rediss://` connection (passed to Node's `tls.connect`). */
export interface QueueTls {
  /** The CA certificate(s) the server's certificate must chain to, as PEM text (instead of NODE_EXTRA_CA_CERTS). */
  ca?: string | Buffer | (string | Buffer)[];
  /** The name the certificate must carry, when it differs from the host. */
  servername?: string;
}

/**
 * A Redis URL (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS), `{ url }`, or host
 * and port. `tlsCa` names a PEM file with the CA of a `rediss://` server's certificate (the CLI's
 * `--tls-ca FILE`); `tls: { ca }` gives the PEM text itself.
 */
export type QueueConnection =
  | string
  | { url: string; tlsCa?: string; tls?: QueueTls }
  | { host: string; port: number; username?: string; password?: string; db?: number; tls?: boolean | QueueTls; tlsCa?: string };

/** The queue every producer and worker uses unless told otherwise. */
export const DEFAULT_QUEUE_NAME = "jointly-train";

/**
 * Turn a {@link QueueConnection} into BullMQ/ioredis connection options. Throws, naming the value,
 * for a URL that is not `redis://` or `rediss://`, a port outside [1, 65535], TLS settings on a
 * plain `redis://` URL, or a `tlsCa` file that cannot be read.
 */
export function connectionOptions(connection: QueueConnection): ConnectionOptions {
  if (typeof connection === "string") return fromUrl(connection);
  if (connection === null || typeof connection !== "object") throw new Error(`Queue connection must be a Redis URL or { host, port }, but got ${JSON.stringify(connection)}.`);
  if ("url" in connection) {
    const base = fromUrl(connection.url) as { tls?: object };
    const tls = tlsOptions(connection.tls, connection.tlsCa, JSON.stringify(redactUrl(connection.url)));
    if (tls && !base.tls) throw new Error(`Queue connection ${JSON.stringify(redactUrl(connection.url))} is plain redis:// but TLS settings (tls/tlsCa) were given; use rediss:// for TLS.`);
    return { ...base, ...(tls ? { tls } : {}) } as ConnectionOptions;
  }
  const { host, port, username, password, db } = connection;
  if (typeof host !== "string" || host === "") throw new Error(`Queue connection host must be a non-empty string, but got ${JSON.stringify(host)}.`);
  checkPort(port, JSON.stringify({ ...connection, password: password ? "***" : undefined }));
  const tls = tlsOptions(connection.tls === true ? {} : connection.tls || undefined, connection.tlsCa, `${host}:${port}`);
  return { host, port, ...(username ? { username } : {}), ...(password ? { password } : {}), ...(db !== undefined ? { db } : {}), ...(tls ? { tls } : {}) } as ConnectionOptions;
}

/** The TLS options from `tls` and a `tlsCa` file, or undefined when neither is given. */
function tlsOptions(tls: QueueTls | undefined, tlsCa: string | undefined, where: string): QueueTls | undefined {
  if (tls === undefined && tlsCa === undefined) return undefined;
  if (tls !== undefined && (tls === null || typeof tls !== "object")) throw new Error(`Queue connection ${where}: tls must be an object like { ca }, but got ${JSON.stringify(tls)}.`);
  const out: QueueTls = { ...(tls ?? {}) };
  if (tlsCa !== undefined) {
    if (typeof tlsCa !== "string" || tlsCa === "") throw new Error(`Queue connection ${where}: tlsCa must be the path of a PEM file, but got ${JSON.stringify(tlsCa)}.`);
    let pem: string;
    try {
      pem = readFileSync(tlsCa, "utf8");
    } catch (err) {
      throw new Error(`Queue connection ${where}: cannot read the TLS CA file ${JSON.stringify(tlsCa)} (${(err as Error).message}).`, { cause: err });
    }
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new Error(`Queue connection ${where}: the TLS CA file ${JSON.stringify(tlsCa)} holds no PEM certificate ("-----BEGIN CERTIFICATE-----").`);
    out.ca = pem;
  }
  return out;
}

function checkPort(port: unknown, where: string): asserts port is number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`Queue connection port must be an integer in [1, 65535], but got ${JSON.stringify(port)} (in ${where}).`);
}

/** The URL with its password replaced by ***, for messages. */
function redactUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/[^:@/]*:)[^@/]*@/, "$1***@");
}

function fromUrl(url: string): ConnectionOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`Queue connection URL is not a URL: ${JSON.stringify(redactUrl(url))} (expected redis://host:6379).`);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") throw new Error(`Queue connection URL must start with redis:// or rediss://, but got ${JSON.stringify(redactUrl(url))}.`);
  const port = parsed.port === "" ? 6379 : Number(parsed.port);
  checkPort(port, JSON.stringify(redactUrl(url)));
  const dbText = parsed.pathname.replace(/^\//, "");
  const db = dbText === "" ? undefined : Number(dbText);
  if (db !== undefined && (!Number.isInteger(db) || db < 0)) throw new Error(`Queue connection URL's database must be a number like /0, but got ${JSON.stringify(parsed.pathname)} in ${JSON.stringify(redactUrl(url))}.`);
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

// ---------------------------------------------------------------------------------------------
// A minimal RESP client: the start-up checks talk to Redis directly, so that a wrong password, a
// refused connection or an untrusted certificate is reported once and at once, instead of ioredis
// retrying it forever in the background.

/** An error reply of Redis (`-ERR ...`, `-WRONGPASS ...`). */
export class RedisReplyError extends Error {}

/** One reply: simple or bulk string, integer, null, array, or an error reply. */
export type RedisReply = string | number | null | RedisReply[] | RedisReplyError;

/** Parse one RESP reply from `buf` at `at`; undefined when the buffer does not hold all of it yet. */
function parseReply(buf: Buffer, at: number): { value: RedisReply; next: number } | undefined {
  const eol = buf.indexOf("\r\n", at);
  if (eol < 0) return undefined;
  const kind = String.fromCharCode(buf[at]);
  const line = buf.toString("utf8", at + 1, eol);
  const after = eol + 2;
  switch (kind) {
    case "+":
      return { value: line, next: after };
    case "-":
      return { value: new RedisReplyError(line), next: after };
    case ":":
      return { value: Number(line), next: after };
    case "$": {
      const n = Number(line);
      if (n < 0) return { value: null, next: after };
      if (buf.length < after + n + 2) return undefined;
      return { value: buf.toString("utf8", after, after + n), next: after + n + 2 };
    }
    case "*": {
      const n = Number(line);
      if (n < 0) return { value: null, next: after };
      const items: RedisReply[] = [];
      let next = after;
      for (let i = 0; i < n; i++) {
        const item = parseReply(buf, next);
        if (!item) return undefined;
        items.push(item.value);
        next = item.next;
      }
      return { value: items, next };
    }
    default:
      throw new Error(`unexpected reply from the server (first byte ${JSON.stringify(kind)}); is it a Redis server${kind === "\u0015" ? " speaking TLS (use rediss://)" : ""}?`);
  }
}

function encodeCommand(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`;
}

/** A socket-level failure of {@link redisCommands}, with Node's error code (ECONNREFUSED, a TLS code, ...). */
export class RedisSocketError extends Error {
  constructor(message: string, readonly code: string | undefined) {
    super(message);
  }
}

/**
 * Send `commands` (pipelined) to the Redis of `connection`, after `AUTH` when it carries a password,
 * and resolve with their replies (the AUTH reply first when one was sent). Rejects with a
 * {@link RedisSocketError} on a socket or TLS failure or no complete answer within `timeoutMs`.
 * For start-up checks and tests; the queue itself talks through BullMQ.
 */
export async function redisCommands(connection: QueueConnection, commands: readonly (readonly string[])[], timeoutMs = 2000): Promise<RedisReply[]> {
  const o = connectionOptions(connection) as { host: string; port: number; username?: string; password?: string; db?: number; tls?: QueueTls };
  const all: (readonly string[])[] = [];
  if (o.password) all.push(o.username ? ["AUTH", o.username, o.password] : ["AUTH", o.password]);
  if (o.db !== undefined) all.push(["SELECT", String(o.db)]);
  all.push(...commands);
  const { createConnection } = await import("node:net");
  const { connect: tlsConnect } = await import("node:tls");
  return new Promise<RedisReply[]>((resolve, reject) => {
    const socket = o.tls ? tlsConnect({ host: o.host, port: o.port, ...o.tls, ...(isIp(o.host) || o.tls.servername ? {} : { servername: o.host }) }) : createConnection({ host: o.host, port: o.port });
    let buf = Buffer.alloc(0);
    const replies: RedisReply[] = [];
    let settled = false;
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (err) reject(err);
      else resolve(replies);
    };
    socket.setTimeout(timeoutMs, () => finish(new RedisSocketError(`no answer within ${timeoutMs} ms`, "ETIMEDOUT")));
    socket.once("error", (err: NodeJS.ErrnoException) => finish(new RedisSocketError(err.message, err.code)));
    socket.once("close", () => finish(new RedisSocketError(`the server closed the connection after ${replies.length} of ${all.length} replies`, "ECONNRESET")));
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      try {
        let at = 0;
        for (let r = parseReply(buf, at); r; r = parseReply(buf, at)) {
          replies.push(r.value);
          at = r.next;
          if (replies.length === all.length) return finish();
        }
        buf = buf.subarray(at);
      } catch (err) {
        finish(new RedisSocketError((err as Error).message, "EPROTO"));
      }
    });
    socket.once(o.tls ? "secureConnect" : "connect", () => socket.write(all.map(encodeCommand).join("")));
  });
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}

/** What the start-up check learnt about the server. */
export interface RedisServerFacts {
  /** `maxmemory-policy`, or undefined when neither CONFIG nor INFO told it. */
  maxmemoryPolicy: string | undefined;
  /** AOF on (`appendonly yes`), or undefined when unknown. */
  appendonly: boolean | undefined;
  /** RDB save points (`save`), "" for none, undefined when unknown (CONFIG disabled). */
  savePoints: string | undefined;
  /** Where the settings came from: CONFIG GET, or INFO when CONFIG is disabled or renamed. */
  source: "CONFIG" | "INFO";
}

/** How {@link probeRedis} treats a server that does not have `maxmemory-policy noeviction`. */
export type RedisChecks = "refuse" | "warn" | "skip";

/** Options of {@link probeRedis}. */
export interface ProbeRedisOptions {
  /** `refuse` (default): throw when maxmemory-policy is not noeviction; `warn`: say so loudly and go on; `skip`: no settings check. */
  checks?: RedisChecks;
  /** Where warnings go (default `console.warn`). */
  warn?: (line: string) => void;
}

const TLS_CODES = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_|ALTNAME|EPROTO/;

/**
 * Check, before BullMQ connects (it would retry forever), that the Redis of `connection` answers,
 * accepts the password and is set up as BullMQ needs. Connection failures (refused, no answer,
 * still loading) are retried for up to `timeoutMs`, then reported naming host:port and the cause
 * ("connection refused", "no answer"); a rejected password ("authentication failed"), an untrusted
 * TLS certificate or a protected-mode refusal is reported at once. Then reads `maxmemory-policy`
 * and persistence (CONFIG GET; INFO when CONFIG is disabled): a policy other than `noeviction` is
 * refused (or, with `checks: "warn"`, warned about), persistence off (`appendonly no` and no save
 * points) is warned about, each with the command that fixes it. `who` starts every message.
 */
export async function probeRedis(connection: QueueConnection, timeoutMs: number, who: string, options: ProbeRedisOptions = {}): Promise<RedisServerFacts> {
  // Every queue function probes first: a missing bullmq is reported before any Redis address is tried.
  await loadBullMQ();
  const { checks = "refuse", warn = (line: string) => console.warn(line) } = options;
  if (!["refuse", "warn", "skip"].includes(checks)) throw new Error(`${who}: redisChecks must be "refuse", "warn" or "skip", but got ${JSON.stringify(checks)}.`);
  const where = describeConnection(connection);
  const o = connectionOptions(connection) as { host: string; port: number; password?: string; tls?: object };
  const hostPort = `${o.host}:${o.port}`;
  const started = Date.now();
  const deadline = started + timeoutMs;
  let tries = 0;
  let lastWhy = "";
  const commands = [["PING"], ["CONFIG", "GET", "maxmemory-policy"], ["CONFIG", "GET", "appendonly"], ["CONFIG", "GET", "save"], ["INFO", "memory"], ["INFO", "persistence"]];
  for (;;) {
    tries++;
    let replies: RedisReply[];
    try {
      replies = await redisCommands(connection, commands, Math.max(200, Math.min(2000, deadline - Date.now())));
    } catch (err) {
      const e = err as RedisSocketError;
      if (e.code && TLS_CODES.test(e.code) || /certificate|ssl|tls/i.test(e.message)) {
        throw new Error(`${who}: TLS with Redis at ${where} failed: ${e.message}${e.code ? ` (${e.code})` : ""}. If the server's certificate comes from a private CA, give that CA: --tls-ca FILE on the worker, tlsCa: FILE (or tls: { ca }) in the connection.`);
      }
      lastWhy = e.code === "ECONNREFUSED" ? `${e.message}: connection refused` : e.code === "ETIMEDOUT" ? `${e.message}: no answer` : e.message;
      if (Date.now() + 250 < deadline) {
        await new Promise((r) => setTimeout(r, Math.min(1000, 125 * 2 ** tries, Math.max(0, deadline - Date.now() - 200))));
        continue;
      }
      throw new Error(`${who}: cannot reach Redis at ${where} (${lastWhy}; ${tries} tr${tries === 1 ? "y" : "ies"} in ${((Date.now() - started) / 1000).toFixed(1)} s); is redis-server running at ${hostPort} and reachable from this machine?`);
    }
    const auth = o.password ? replies.shift() : undefined;
    if (auth instanceof RedisReplyError) {
      if (/called without any password configured/i.test(auth.message)) warn(`${who}: WARNING: a password was given but Redis at ${where} has none set (${auth.message}); anyone who reaches ${hostPort} can use it: set one with --requirepass.`);
      else throw new Error(`${who}: authentication failed at Redis ${where}: ${auth.message.replace(/\.$/, "")}. The password (or user) in the connection is wrong: give the one of the server's requirepass as redis://:PASSWORD@${hostPort}.`);
    }
    const ping = replies[0];
    if (ping instanceof RedisReplyError) {
      if (/^NOAUTH/.test(ping.message)) throw new Error(`${who}: authentication failed at Redis ${where}: it needs a password and none was given (${ping.message}). Put it in the URL: redis://:PASSWORD@${hostPort}.`);
      if (/^DENIED/.test(ping.message)) throw new Error(`${who}: Redis at ${where} refused the connection (${ping.message.slice(0, 200)}...). Give the server a password (--requirepass SECRET) and connect with redis://:SECRET@${hostPort}.`);
      if (/^LOADING/.test(ping.message) && Date.now() + 250 < deadline) {
        // Still reading its AOF after a restart: wait for it, within the same bound.
        lastWhy = ping.message;
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      throw new Error(`${who}: Redis at ${where} answered PING with an error: ${ping.message}.`);
    }
    const facts = readFacts(replies.slice(1));
    if (checks !== "skip") judge(facts, who, where, o.host, o.port, Boolean(o.password), checks, warn);
    return facts;
  }
}

function configValue(reply: RedisReply | undefined): string | undefined {
  return Array.isArray(reply) && reply.length >= 2 && typeof reply[1] === "string" ? reply[1] : undefined;
}

function infoField(reply: RedisReply | undefined, field: string): string | undefined {
  if (typeof reply !== "string") return undefined;
  const m = reply.match(new RegExp(`^${field}:(.*)$`, "m"));
  return m ? m[1].trim() : undefined;
}

function readFacts(replies: RedisReply[]): RedisServerFacts {
  const [policy, appendonly, save, infoMemory, infoPersistence] = replies;
  const fromConfig = configValue(policy);
  if (fromConfig !== undefined) {
    const aof = configValue(appendonly);
    return { maxmemoryPolicy: fromConfig, appendonly: aof === undefined ? undefined : aof === "yes", savePoints: configValue(save), source: "CONFIG" };
  }
  // CONFIG renamed or disabled (managed Redis services often do): INFO tells the policy and the AOF.
  const aof = infoField(infoPersistence, "aof_enabled");
  return { maxmemoryPolicy: infoField(infoMemory, "maxmemory_policy"), appendonly: aof === undefined ? undefined : aof === "1", savePoints: undefined, source: "INFO" };
}

function judge(facts: RedisServerFacts, who: string, where: string, host: string, port: number, hasPassword: boolean, checks: RedisChecks, warn: (line: string) => void): void {
  const cli = `redis-cli -h ${host} -p ${port}${hasPassword ? " -a PASSWORD" : ""}`;
  if (facts.maxmemoryPolicy === undefined) {
    warn(`${who}: WARNING: could not read maxmemory-policy of Redis at ${where} (neither CONFIG GET nor INFO memory told it); BullMQ needs noeviction, make sure the server has "maxmemory-policy noeviction".`);
  } else if (facts.maxmemoryPolicy !== "noeviction") {
    const message = `Redis at ${where} has maxmemory-policy ${facts.maxmemoryPolicy}, but BullMQ needs noeviction: with any other policy Redis deletes queue keys when its memory fills, and jobs are lost without an error. Fix: ${cli} CONFIG SET maxmemory-policy noeviction (then CONFIG REWRITE to keep it), or the line "maxmemory-policy noeviction" in redis.conf.`;
    if (checks === "refuse") throw new Error(`${who}: refusing to start: ${message} (redisChecks: "warn" / --redis-checks warn only warns.)`);
    warn(`${who}: WARNING! ${message} Going on because redisChecks is "warn".`);
  }
  const noSave = facts.savePoints === "" || (facts.source === "INFO" && facts.savePoints === undefined);
  if (facts.appendonly === false && noSave) {
    warn(
      `${who}: WARNING! Redis at ${where} has persistence off (appendonly no${facts.source === "CONFIG" ? ", no save points" : "; save points unknown, CONFIG is disabled"}): a Redis restart loses every queued job and result. Fix: ${cli} CONFIG SET appendonly yes (then CONFIG REWRITE), or the lines "appendonly yes" and "appendfsync everysec" in redis.conf.`,
    );
  }
}

/** A Redis error message with what to do about it, for the messages of the producer and workers. */
export function explainRedisError(message: string, where: string): string {
  if (/\bOOM\b/.test(message)) return `Redis at ${where} is out of memory (${message}); with maxmemory-policy noeviction it refuses writes rather than dropping jobs. Raise its maxmemory (redis-cli CONFIG SET maxmemory 2gb), or remove finished jobs (queue.clean / obliterate).`;
  if (/NOAUTH|WRONGPASS|invalid password|invalid username-password/i.test(message)) return `authentication failed at Redis ${where} (${message}).`;
  if (/ECONNREFUSED/.test(message)) return `Redis at ${where}: connection refused (${message}).`;
  return `Redis at ${where}: ${message}`;
}
