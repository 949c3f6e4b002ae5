/**
 * Stopping a notebook run for good. Jupyter starts each kernel in a session of its own
 * (`start_new_session`), so killing the executor's process group leaves the kernel, and whatever the
 * kernel started, running. These helpers find every process a run started, by parent links and by
 * the process groups and sessions those processes lead, and kill them all.
 */
import { spawnSync } from "node:child_process";

/** One row of the process table. */
export interface ProcessRow {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
}

/** The process table from `ps` (Linux and macOS); empty when `ps` cannot run. */
export function processTable(): ProcessRow[] {
  const r = spawnSync("ps", ["-A", "-o", "pid=,ppid=,pgid=,sid="], { encoding: "utf8" });
  if (r.status !== 0 || !r.stdout) return [];
  return r.stdout
    .split("\n")
    .map((line) => line.trim().split(/\s+/).map(Number))
    .filter((f) => f.length === 4 && f.every((n) => Number.isInteger(n) && n >= 0))
    .map(([pid, ppid, pgid, sid]) => ({ pid: pid!, ppid: ppid!, pgid: pgid!, sid: sid! }));
}

/**
 * Every process that belongs to a run: the roots, their descendants, and every member of a process
 * group or session that one of those leads or belongs to. Groups and sessions shared with `self`
 * (the runner: its own group, its terminal's session) are never taken, nor are pids 0 and 1.
 */
export function runProcesses(table: ProcessRow[], roots: number[], self: { pid: number; pgid?: number; sid?: number }): number[] {
  const byParent = new Map<number, ProcessRow[]>();
  for (const row of table) byParent.set(row.ppid, [...(byParent.get(row.ppid) ?? []), row]);
  const mine = table.find((r) => r.pid === self.pid);
  const protectedIds = new Set([0, 1, self.pid, self.pgid ?? mine?.pgid ?? -1, self.sid ?? mine?.sid ?? -1]);
  const taken = new Set<number>();
  const groups = new Set<number>();
  const queue = roots.filter((p) => !protectedIds.has(p));
  while (queue.length) {
    const pid = queue.pop() as number;
    if (taken.has(pid) || protectedIds.has(pid)) continue;
    taken.add(pid);
    const row = table.find((r) => r.pid === pid);
    if (row) {
      for (const id of [row.pgid, row.sid]) if (!protectedIds.has(id)) groups.add(id);
    }
    for (const child of byParent.get(pid) ?? []) queue.push(child.pid);
    // A group or session led by a taken process takes all its members, even re-parented ones.
    for (const other of table) if (!taken.has(other.pid) && (groups.has(other.pgid) || groups.has(other.sid))) queue.push(other.pid);
  }
  return [...taken].sort((a, b) => a - b);
}

/**
 * Send `signal` to every process of a run (see {@link runProcesses}); returns the pids signalled.
 * The table is read before any signal, while parent links still say who started whom.
 */
export function killRun(roots: number[], signal: NodeJS.Signals = "SIGKILL", table: ProcessRow[] = processTable()): number[] {
  const pids = runProcesses(table, roots, { pid: process.pid });
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
  return pids;
}

/** Whether a process is still alive (a zombie counts as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const r = spawnSync("ps", ["-o", "stat=", "-p", String(pid)], { encoding: "utf8" });
  return r.status === 0 && !r.stdout.trim().startsWith("Z");
}
