/**
 * Where a job may write: an output folder is accepted only when, resolved the way the file system
 * will resolve it (`..` and symlinks, also through folders that do not exist yet), it lies inside
 * one of the worker's output roots.
 */
import { randomBytes } from "node:crypto";
import { lstatSync, promises as fsp, readlinkSync, realpathSync } from "node:fs";
import { hostname } from "node:os";
import { delimiter, dirname, isAbsolute, join, parse, relative, resolve, sep } from "node:path";

/** Environment variable naming the output roots, separated by `:` (`;` on Windows). */
export const OUT_ROOT_ENV = "JOINTLY_OUT_ROOT";

/** Symlinks followed in one path before giving up (Linux stops at 40 as well). */
const MAX_LINKS = 40;

/**
 * `path` as the file system sees it: each segment is taken in turn, an existing one replaced by its
 * real path, so `..` after a symlink goes up from the link's target (as the kernel does, unlike a
 * lexical `path.resolve`), and the part that does not exist yet is appended to the real path of its
 * deepest existing ancestor. A dangling symlink is followed to where it points.
 */
export function resolveReal(path: string, base: string = process.cwd()): string {
  let links = 0;
  const walk = (target: string, from: string): string => {
    const abs = isAbsolute(target) ? target : join(from, target);
    // The walk starts at the file system root of the path ("/" or "C:\\").
    const { root } = parse(abs);
    let current = realpathSync(root);
    for (const segment of abs.slice(root.length).split(/[\\/]+/)) {
      if (segment === "" || segment === ".") continue;
      if (segment === "..") {
        // current holds no symlinks, so its parent is the real parent.
        current = dirname(current);
        continue;
      }
      const next = join(current, segment);
      let isLink = false;
      try {
        isLink = lstatSync(next).isSymbolicLink();
      } catch {
        // Does not exist (yet): the folder will be created right here.
        current = next;
        continue;
      }
      if (!isLink) {
        current = next;
        continue;
      }
      if (++links > MAX_LINKS) throw new Error(`resolveReal: more than ${MAX_LINKS} symlinks while resolving ${path} (a loop?).`);
      // Follow the link ourselves, so a dangling one still resolves to where a write would land.
      current = walk(readlinkSync(next), current);
    }
    return current;
  };
  return walk(path, resolve(base));
}

function inside(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!isAbsolute(rel) && rel !== ".." && !rel.startsWith(`..${sep}`));
}

/**
 * Resolve `outDir` (after `..` and symlinks; for a folder that does not exist yet, through the real
 * path of its deepest existing ancestor) and return that absolute path if it lies inside one of
 * `roots` (resolved the same way; the root itself counts as inside). Otherwise throw an error that
 * names `outDir`, what it resolves to, and the roots.
 *
 * @example
 * confineOutDir("models/run-1", defaultOutRoots()); // "/srv/jobs/models/run-1"
 * confineOutDir("models/../../etc", ["/srv/jobs"]);  // throws: resolves to /etc, outside /srv/jobs
 */
export function confineOutDir(outDir: string, roots: readonly string[]): string {
  if (typeof outDir !== "string" || outDir.trim() === "") throw new Error(`confineOutDir: outDir must be a folder path, but got ${JSON.stringify(outDir)}.`);
  if (!Array.isArray(roots) || roots.length === 0 || roots.some((r) => typeof r !== "string" || r.trim() === "")) {
    throw new Error(`confineOutDir: roots must be a non-empty array of folder paths, but got ${JSON.stringify(roots)}.`);
  }
  const real = resolveReal(outDir);
  const realRoots = roots.map((r) => resolveReal(r));
  if (realRoots.some((r) => inside(real, r))) return real;
  const shown = roots.map((r, i) => (resolve(r) === realRoots[i] ? r : `${r} (${realRoots[i]})`)).join(", ");
  throw new Error(
    `The output folder ${JSON.stringify(outDir)} resolves to ${real}, which is outside the allowed output root${roots.length > 1 ? "s" : ""} ${shown}; ` +
      `write under ${roots.length > 1 ? "one of them" : "it"}, or start the worker with --out-root (or ${OUT_ROOT_ENV}) naming a folder that holds it.`,
  );
}

/**
 * The output roots a worker uses when it is given none: the folders in `JOINTLY_OUT_ROOT`
 * (separated by `:`), else the folder the process was started in.
 */
export function defaultOutRoots(env: NodeJS.ProcessEnv = process.env): string[] {
  const listed = (env[OUT_ROOT_ENV] ?? "").split(delimiter).filter((p) => p.trim() !== "");
  return listed.length > 0 ? listed.map((p) => resolve(p)) : [process.cwd()];
}

/**
 * A job's model folder, `outDir` + `/` + `id`, without `path.join`'s lexical folding of `..`: a
 * write follows a symlink before `..`, so `link/..` must stay for {@link confineOutDir} to resolve
 * it as the file system will.
 */
export function modelFolder(outDir: string, id: string): string {
  return `${outDir.replace(/[\\/]+$/, "") || sep}${sep}${id}`;
}

/** The file in a model folder that names the job which wrote it. */
export const JOB_FILE = "job.json";

/** What {@link JOB_FILE} holds. */
export interface JobClaim {
  /** The id of the job that owns the folder. */
  job: string;
  /** When the folder was first claimed (ISO time). */
  claimed: string;
  host: string;
  pid: number;
}

/** The job that owns `dir`: from its job.json, else from a saved model's jointly metadata; `null` when neither says. */
async function folderOwner(dir: string): Promise<{ job: string; from: string } | null> {
  const claimFile = join(dir, JOB_FILE);
  let text: string | undefined;
  try {
    text = await fsp.readFile(claimFile, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new Error(`The model folder ${dir} has a ${JOB_FILE} that cannot be read: ${(err as Error).message}`);
  }
  if (text !== undefined) {
    let job: unknown;
    try {
      job = (JSON.parse(text) as Partial<JobClaim>).job;
    } catch {
      job = undefined;
    }
    if (typeof job !== "string") throw new Error(`The model folder ${dir} has a ${JOB_FILE} that names no job (${JSON.stringify(text.slice(0, 80))}); remove the folder or that file if nothing in it is needed.`);
    return { job, from: claimFile };
  }
  // A model saved before job.json existed still says which job trained it.
  try {
    const model = JSON.parse(await fsp.readFile(join(dir, "model.json"), "utf8")) as { userDefinedMetadata?: { jointly?: { job?: unknown } } };
    const job = model.userDefinedMetadata?.jointly?.job;
    if (typeof job === "string") return { job, from: join(dir, "model.json") };
  } catch {
    // No model.json, or not one of ours: judged by the folder's contents below.
  }
  return null;
}

/**
 * Make sure `dir` (a job's model folder) belongs to job `jobId`, and record that in its
 * {@link JOB_FILE}: a folder another job id wrote, or one holding files no job wrote, is refused
 * with an error naming both; an empty or missing folder is claimed; the same id (a retried or
 * re-run job) may go on and overwrite its own model. The claim is published with one atomic
 * `link`, so of two jobs racing for one folder only one wins.
 */
export async function claimModelDir(dir: string, jobId: string): Promise<void> {
  const refuse = (why: string): never => {
    throw new Error(`Job ${JSON.stringify(jobId)} will not write its model to ${dir}: ${why}. Choose another outDir, or remove that folder if what it holds is not needed.`);
  };
  const check = async (): Promise<boolean> => {
    const owner = await folderOwner(dir);
    if (owner) {
      if (owner.job !== jobId) refuse(`the folder was written by job ${JSON.stringify(owner.job)} (${owner.from})`);
      return owner.from.endsWith(JOB_FILE);
    }
    // Temporary files of an interrupted save are not content worth protecting.
    const entries = (await fsp.readdir(dir)).filter((name) => !name.startsWith(".tmp-") && !name.startsWith(".trash-") && !name.includes(".tmp-"));
    if (entries.length > 0) refuse(`the folder holds ${entries.slice(0, 5).join(", ")}${entries.length > 5 ? `, ... (${entries.length} entries)` : ""} and no ${JOB_FILE}, so no job wrote it`);
    return false;
  };
  try {
    await fsp.mkdir(dir, { recursive: true });
  } catch (err) {
    throw new Error(`Job ${JSON.stringify(jobId)} cannot create its model folder ${dir}: ${(err as Error).message}`, { cause: err });
  }
  if (await check()) return;
  const claim: JobClaim = { job: jobId, claimed: new Date().toISOString(), host: hostname(), pid: process.pid };
  const tmp = join(dir, `${JOB_FILE}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  const handle = await fsp.open(tmp, "w");
  try {
    await handle.writeFile(JSON.stringify(claim, null, 2));
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    // link fails with EEXIST when another writer claimed the folder first; rename would overwrite it.
    await fsp.link(tmp, join(dir, JOB_FILE));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") await check();
    // A file system without hard links: publish with rename (not exclusive, but still atomic).
    else if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP") await fsp.rename(tmp, join(dir, JOB_FILE));
    else throw err;
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}
