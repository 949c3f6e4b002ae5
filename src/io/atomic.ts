/**
 * Folders whose set of files is replaced atomically: after {@link writeFolderAtomically} returns, the
 * folder holds the new set, durably; a SIGKILL or a power loss at any moment leaves either the old
 * complete set or the new complete set, never a mix and never nothing when there was an old one.
 *
 * Layout of a folder `dir` (the names are fixed; everything is relative, so the folder can be moved):
 *
 * ```
 * dir/v-0000000007-9f8e7d6c/      one complete version: every file, flushed before the folder got
 *                                 this name. The version with the highest number is the current one.
 * dir/current -> v-0000000007-9f8e7d6c   a symlink to the current version, for tools and people
 * dir/model.json -> current/model.json   one symlink a file (option `links`, on by default), so
 *                                 `dir/<name>` opens the current file as in a plain folder
 * dir/.tmp-<host>-<pid>-<rand>... a write in progress, or left by a killed one
 * dir/.trash-<host>-<pid>-<rand>  an old version being deleted
 * ```
 *
 * A write: (1) the files go into a fresh `.tmp-...` folder, each written and fsynced, then that folder
 * is fsynced; (2) it is renamed to `v-<n+1>-<rand>` (the one step that publishes; a folder only ever
 * gets a `v-` name complete), then `dir` is fsynced so the rename survives a power loss; (3) the
 * `current` symlink is swapped by renaming a new symlink over it, and the per-file links are made if
 * missing; (4) older versions are renamed to `.trash-...` and deleted. A kill before (2) leaves the
 * old version current; after it, the new one. Readers take the highest `v-` folder, not `current`,
 * so a kill between (2) and (3) is harmless too (`current` then still names the old, complete one).
 *
 * Leftovers of killed writes (`.tmp-...`, `.trash-...`, superseded versions) are removed by the next
 * write and by {@link readFolder}: a `.tmp-...` entry only when its writer is gone (same host and its
 * process no longer exists, or this process and not a write in flight, or another host's entry older
 * than an hour), so a concurrent writer is never disturbed.
 *
 * Where symlinks cannot be made (some Windows set-ups, some network file systems) the folder has no
 * `current` and no per-file links; versions and readers work the same.
 */
import { createHash, randomBytes } from "node:crypto";
import { constants as fsConstants, promises as fsp, type Dirent } from "node:fs";
import { hostname } from "node:os";
import { dirname, join, resolve } from "node:path";

/** Replaceable file operations (tests simulate a failing disk with them). */
export interface FileOps {
  /** Write `data` to a new file at `path` and flush it to disk. */
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
}

/** The kinds of file operation a write reports to {@link setFileOperationHook}. */
export type FileOperation = "mkdir" | "write" | "fsync" | "fsync-dir" | "rename" | "symlink" | "remove";

/** A function told after every file operation that changes or flushes a folder. */
export type FileOperationHook = (op: FileOperation, path: string) => void;

let operationHook: FileOperationHook | undefined;

/**
 * For tests: call `hook` synchronously right after every file operation of
 * {@link writeFolderAtomically} and of the clean-up (a crash test kills the process from it).
 * Returns the previous hook; pass `undefined` to remove it.
 */
export function setFileOperationHook(hook: FileOperationHook | undefined): FileOperationHook | undefined {
  const previous = operationHook;
  operationHook = hook;
  return previous;
}

function done(op: FileOperation, path: string): void {
  operationHook?.(op, path);
}

/** Name of the symlink to the current version. */
export const CURRENT_LINK = "current";
const VERSION = /^v-(\d{10,})-([0-9a-f]{8})$/;
const TEMP = /^\.tmp-([0-9a-f]{8})-(\d+)-([0-9a-f]{8})(?:-.*)?$/;
const TRASH = /^\.trash-/;
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/;
/** A `.tmp-...` entry of another machine is taken for abandoned after this long. */
const FOREIGN_STALE_MS = 60 * 60 * 1000;

/** This machine, as 8 hex digits (a host name may hold characters a file name should not). */
const HOST = createHash("sha256").update(hostname()).digest("hex").slice(0, 8);
/** Tags of this process's writes in flight: their `.tmp-...` entries are not leftovers. */
const inFlight = new Set<string>();

const hex8 = (): string => randomBytes(4).toString("hex");

/** Whether a process with this id exists on this machine (EPERM: it exists, owned by someone else). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The nearest part of `path` (itself or an ancestor) that exists, with whether it is a folder. */
async function nearestExisting(path: string): Promise<{ path: string; isDir: boolean }> {
  let p = resolve(path);
  for (;;) {
    try {
      const st = await fsp.stat(p);
      return { path: p, isDir: st.isDirectory() };
    } catch {
      const up = dirname(p);
      if (up === p) return { path: p, isDir: true };
      p = up;
    }
  }
}

/**
 * Why files cannot be written under `dir`, in words: a folder that is not writable or on a
 * read-only file system, or a file standing where a folder should be, named; else the system's
 * message. (Node's own message names only the operation, e.g. `EACCES: permission denied, mkdir
 * '/data/new'`, or ENOENT for a path under a read-only mount.)
 */
export async function explainWriteFailure(dir: string, err: unknown): Promise<string> {
  const code = (err as NodeJS.ErrnoException)?.code;
  const raw = (err as Error)?.message ?? String(err);
  const at = await nearestExisting(dir);
  if (!at.isDir) return `${at.path} is a file, not a folder (${raw}); choose another output folder, or move the file away.`;
  let access: string | undefined;
  try {
    await fsp.access(at.path, fsConstants.W_OK);
  } catch (e) {
    access = (e as NodeJS.ErrnoException).code;
  }
  if (code === "EROFS" || access === "EROFS") return `the folder ${at.path} is on a read-only file system (${raw}); choose an output folder on a writable disk.`;
  if (code === "EACCES" || code === "EPERM" || access !== undefined) {
    return `the folder ${at.path} is not writable by this process (${raw}); choose a folder you can write to, or change its permissions.`;
  }
  return raw;
}

/**
 * A failed {@link writeFolderAtomically}. `stage` says how far it got: `"create"` (the folder itself
 * could not be made), `"write"` (nothing was published: the old set is intact), `"flush"` (the new
 * set is visible but flushing the folder failed, so it may not survive a power loss), `"links"` (the
 * new set is saved; only the convenience symlinks could not be updated). `reason` is the cause in
 * words, naming the folder; `cause` the system error.
 */
export class AtomicWriteError extends Error {
  constructor(
    readonly dir: string,
    readonly stage: "create" | "write" | "flush" | "links",
    readonly reason: string,
    options: { cause: unknown },
  ) {
    const what = {
      create: `cannot create the folder ${dir}`,
      write: `writing ${dir} failed, nothing was published`,
      flush: `the new files of ${dir} were published, but flushing the folder failed (they may not survive a power loss)`,
      links: `the new files of ${dir} were saved, but updating its symlinks failed`,
    }[stage];
    super(`writeFolderAtomically: ${what}: ${reason}`, options);
    this.name = "AtomicWriteError";
  }
  /** Whether readers now see the new set. */
  get published(): boolean {
    return this.stage === "flush" || this.stage === "links";
  }
}

async function writeDurable(path: string, data: Uint8Array | string): Promise<void> {
  // "wx": a temporary name is never reused, so an existing file here is a bug, not something to overwrite.
  const handle = await fsp.open(path, "wx");
  try {
    await handle.writeFile(data);
    done("write", path);
    await handle.sync();
    done("fsync", path);
  } finally {
    await handle.close();
  }
}

/** fsync a folder so the names created or renamed in it survive a power loss. */
async function fsyncDir(path: string): Promise<void> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(path, "r");
  } catch (err) {
    // Windows cannot open a folder; its file systems order these updates themselves.
    if (process.platform === "win32") return;
    throw err;
  }
  try {
    await handle.sync();
  } catch (err) {
    // Some file systems (a few FUSE and network ones) refuse fsync on a folder.
    if (!["EINVAL", "ENOTSUP", "EISDIR", "EPERM"].includes((err as NodeJS.ErrnoException).code ?? "")) throw err;
  } finally {
    await handle.close();
  }
  done("fsync-dir", path);
}

async function removeEntry(path: string): Promise<void> {
  await fsp.rm(path, { recursive: true, force: true });
  done("remove", path);
}

const errCode = (err: unknown): string | undefined => (err as NodeJS.ErrnoException)?.code;

interface FolderState {
  /** Version folder names, highest first. */
  versions: string[];
  temps: { name: string; host: string; pid: number; tag: string }[];
  trash: string[];
  /** The other entries, by name. */
  others: Map<string, Dirent>;
}

/** The entries of `dir` by role; undefined when `dir` does not exist. */
async function scan(dir: string): Promise<FolderState | undefined> {
  let entries: Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (errCode(err) === "ENOENT") return undefined;
    if (errCode(err) === "ENOTDIR") throw new Error(`${dir} is a file, not a folder.`, { cause: err });
    throw new Error(`cannot list the folder ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const state: FolderState = { versions: [], temps: [], trash: [], others: new Map() };
  const seq = new Map<string, bigint>();
  for (const e of entries) {
    const v = VERSION.exec(e.name);
    const t = TEMP.exec(e.name);
    if (v && e.isDirectory()) {
      state.versions.push(e.name);
      seq.set(e.name, BigInt(v[1] as string));
    } else if (t) state.temps.push({ name: e.name, host: t[1] as string, pid: Number(t[2]), tag: `${t[1]}-${t[2]}-${t[3]}` });
    else if (TRASH.test(e.name)) state.trash.push(e.name);
    else state.others.set(e.name, e);
  }
  // Highest number first; on a tie (two concurrent writers) the name decides, the same for every reader.
  state.versions.sort((a, b) => {
    const d = (seq.get(b) as bigint) - (seq.get(a) as bigint);
    return d > 0n ? 1 : d < 0n ? -1 : a < b ? 1 : a > b ? -1 : 0;
  });
  return state;
}

async function readLink(path: string): Promise<string | undefined> {
  try {
    return await fsp.readlink(path);
  } catch {
    return undefined;
  }
}

/** Whether the writer of a `.tmp-...` entry is gone for good. */
async function abandoned(dir: string, temp: FolderState["temps"][number]): Promise<boolean> {
  if (temp.host === HOST) return temp.pid === process.pid ? !inFlight.has(temp.tag) : !processExists(temp.pid);
  try {
    return Date.now() - (await fsp.lstat(join(dir, temp.name))).mtimeMs > FOREIGN_STALE_MS;
  } catch {
    return false;
  }
}

/**
 * Remove the leftovers of killed or finished writes: trash, abandoned temporary entries, and every
 * version but the highest and the one `current` names. `flushed`: `dir` was fsynced after the
 * highest version got its name (else it is fsynced here first, so a power loss can never keep the
 * deletion of an old version and lose the rename that published the new one).
 */
async function cleanUp(dir: string, flushed: boolean): Promise<void> {
  const state = await scan(dir);
  if (state === undefined) return;
  for (const name of state.trash) await removeEntry(join(dir, name));
  for (const temp of state.temps) if (await abandoned(dir, temp)) await removeEntry(join(dir, temp.name));
  const current = await readLink(join(dir, CURRENT_LINK));
  const old = state.versions.slice(1).filter((v) => v !== current);
  if (old.length === 0) return;
  if (!flushed) await fsyncDir(dir);
  for (const v of old) {
    // Renamed first, so a reader sees the whole version or none of it, never a half-deleted one.
    const trash = join(dir, `.trash-${HOST}-${process.pid}-${hex8()}`);
    try {
      await fsp.rename(join(dir, v), trash);
    } catch (err) {
      if (errCode(err) === "ENOENT") continue; // another process removed it first
      throw err;
    }
    done("rename", trash);
    await removeEntry(trash);
  }
}

/** Symlink errors that mean "this file system or account cannot make symlinks". */
const NO_SYMLINKS = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EINVAL"]);

/**
 * Point `current` at `version` and (with `perFile`) make `dir/<name> -> current/<name>` for each
 * name; drop links made for names no longer in the set. Does nothing where symlinks cannot be made.
 */
async function updateLinks(dir: string, version: string, names: string[], perFile: boolean, tag: string, ops: FileOps): Promise<void> {
  let changed = false;
  const swap = async (target: string, name: string, i: number): Promise<boolean> => {
    const tmp = join(dir, `.tmp-${tag}-link${i}`);
    try {
      await fsp.symlink(target, tmp);
    } catch (err) {
      if (NO_SYMLINKS.has(errCode(err) ?? "")) return false;
      throw err;
    }
    done("symlink", tmp);
    await ops.rename(tmp, join(dir, name));
    done("rename", join(dir, name));
    changed = true;
    return true;
  };
  if ((await readLink(join(dir, CURRENT_LINK))) !== version && !(await swap(version, CURRENT_LINK, 0))) return;
  if (perFile) {
    const state = (await scan(dir)) as FolderState;
    // A folder in the old layout holds plain files: the first name (the index, e.g. model.json) is
    // removed before any link appears and linked last, so "the index exists" keeps implying "the
    // files it lists exist and belong to it" for tools that read `dir/<name>` directly.
    for (const name of names) {
      const e = state.others.get(name);
      if (e?.isFile()) {
        await fsp.rm(join(dir, name), { force: true });
        done("remove", join(dir, name));
        changed = true;
      }
    }
    for (let i = names.length - 1; i >= 0; i--) {
      const name = names[i] as string;
      const e = state.others.get(name);
      if (e?.isDirectory()) continue; // someone's folder of that name: leave it alone
      if ((await readLink(join(dir, name))) === `${CURRENT_LINK}/${name}`) continue;
      if (!(await swap(`${CURRENT_LINK}/${name}`, name, i + 1))) return;
    }
    // Links this module made for files the new set no longer has.
    for (const [name, e] of state.others) {
      if (!e.isSymbolicLink() || names.includes(name) || name === CURRENT_LINK) continue;
      if ((await readLink(join(dir, name))) === `${CURRENT_LINK}/${name}`) {
        await fsp.rm(join(dir, name), { force: true });
        done("remove", join(dir, name));
        changed = true;
      }
    }
  }
  if (changed) await fsyncDir(dir);
}

function checkNames(dir: string, files: Record<string, Uint8Array | string>): string[] {
  if (typeof dir !== "string" || dir === "") throw new Error(`writeFolderAtomically: dir must be a folder path, but got ${JSON.stringify(dir)}.`);
  if (typeof files !== "object" || files === null) throw new Error(`writeFolderAtomically(${dir}): files must be an object of name -> contents, but got ${String(files)}.`);
  const names = Object.keys(files);
  for (const name of names) {
    if (!FILE_NAME.test(name) || name === CURRENT_LINK || VERSION.test(name)) {
      throw new Error(`writeFolderAtomically(${dir}): ${JSON.stringify(name)} cannot be a file name here; use letters, digits, '.', '_' and '-', not starting with '.', and not "${CURRENT_LINK}" or "v-...".`);
    }
    const data = files[name];
    if (typeof data !== "string" && !(data instanceof Uint8Array)) {
      throw new Error(`writeFolderAtomically(${dir}): the contents of ${name} must be a string or a Uint8Array, but got ${Object.prototype.toString.call(data)}.`);
    }
  }
  return names;
}

/**
 * Replace the set of files in `dir` (created if missing) with `files`, atomically and durably: when
 * it returns, {@link readFolder} gives exactly these files, also after a power loss; a crash at any
 * moment leaves the old complete set or this one. See the module comment for the layout and steps.
 *
 * @param files file name (no folders) -> contents. With `links` (default true), `dir/<name>` is a
 *   symlink to the current file; the first name is treated as the index (it appears last).
 * @param options.fileOps replace the file write (which must flush) or the rename (tests).
 * @throws AtomicWriteError naming the folder and how far the write got.
 */
export async function writeFolderAtomically(
  dir: string,
  files: Record<string, Uint8Array | string>,
  options: { links?: boolean; fileOps?: Partial<FileOps> } = {},
): Promise<void> {
  const names = checkNames(dir, files);
  const ops: FileOps = { writeFile: writeDurable, rename: (a, b) => fsp.rename(a, b), ...options.fileOps };
  try {
    await fsp.mkdir(dir, { recursive: true });
  } catch (err) {
    throw new AtomicWriteError(dir, "create", await explainWriteFailure(dir, err), { cause: err });
  }
  const tag = `${HOST}-${process.pid}-${hex8()}`;
  const tmp = join(dir, `.tmp-${tag}`);
  inFlight.add(tag);
  let stage: "write" | "flush" | "links" = "write";
  try {
    // Leftovers first, so a folder that saw killed writes does not keep growing; best effort (the
    // write below reports a folder that cannot be changed).
    await cleanUp(dir, false).catch(() => {});
    await fsp.mkdir(tmp);
    done("mkdir", tmp);
    for (const name of names) {
      const path = join(tmp, name);
      await ops.writeFile(path, files[name] as Uint8Array | string);
      if (ops.writeFile !== writeDurable) done("write", path);
    }
    await fsyncDir(tmp);
    const state = (await scan(dir)) as FolderState;
    const top = state.versions[0] === undefined ? 0n : BigInt((VERSION.exec(state.versions[0]) as RegExpExecArray)[1] as string);
    const version = `v-${String(top + 1n).padStart(10, "0")}-${hex8()}`;
    await ops.rename(tmp, join(dir, version));
    done("rename", join(dir, version));
    stage = "flush";
    await fsyncDir(dir);
    stage = "links";
    // `current` follows the highest version, which a concurrent write may have published meanwhile.
    const newest = (await scan(dir))?.versions[0] ?? version;
    await updateLinks(dir, newest, names, options.links ?? true, tag, ops);
  } catch (err) {
    if (stage === "write") await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
    const reason = stage === "write" ? await explainWriteFailure(dir, err) : ((err as Error)?.message ?? String(err));
    throw new AtomicWriteError(dir, stage, reason, { cause: err });
  } finally {
    inFlight.delete(tag);
  }
  // The old version and anything else left over; a failure here only leaves garbage for next time.
  await cleanUp(dir, true).catch(() => {});
}

/**
 * The current complete set of files in `dir` (written by {@link writeFolderAtomically}), or
 * undefined when `dir` is missing or holds no version (a folder in another layout is not read
 * here). Also removes the leftovers of killed writes, unless `cleanUp: false` (errors there, say on
 * a read-only mount, are ignored).
 *
 * @throws Error naming the folder when it cannot be listed or the current version cannot be read.
 */
export async function readFolder(dir: string, options: { cleanUp?: boolean } = {}): Promise<Record<string, Uint8Array> | undefined> {
  if (typeof dir !== "string" || dir === "") throw new Error(`readFolder: dir must be a folder path, but got ${JSON.stringify(dir)}.`);
  for (let attempt = 0; ; attempt++) {
    let state: FolderState | undefined;
    try {
      state = await scan(dir);
    } catch (err) {
      throw new Error(`readFolder: ${(err as Error).message}`, { cause: err });
    }
    const version = state?.versions[0];
    if (version === undefined) {
      // No version yet, but a killed first write may have left its temporary folder.
      if (state !== undefined && (options.cleanUp ?? true)) await cleanUp(dir, false).catch(() => {});
      return undefined;
    }
    const files: Record<string, Uint8Array> = {};
    try {
      for (const e of await fsp.readdir(join(dir, version), { withFileTypes: true })) {
        if (e.isFile()) files[e.name] = new Uint8Array(await fsp.readFile(join(dir, version, e.name)));
      }
    } catch (err) {
      // A concurrent write published a newer version and removed this one: read again.
      if (errCode(err) === "ENOENT" && attempt < 20) continue;
      throw new Error(`readFolder: cannot read the current version ${join(dir, version)}: ${(err as Error).message}`, { cause: err });
    }
    if (options.cleanUp ?? true) await cleanUp(dir, false).catch(() => {});
    return files;
  }
}
