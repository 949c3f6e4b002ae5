/**
 * Where a job may write: an output folder is accepted only when, resolved the way the file system
 * will resolve it (`..` and symlinks, also through folders that do not exist yet), it lies inside
 * one of the worker's output roots.
 */
import { lstatSync, readlinkSync, realpathSync } from "node:fs";
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
