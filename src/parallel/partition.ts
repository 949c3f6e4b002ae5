/**
 * Split one table into N disjoint parts, one per independently trained model: contiguous blocks,
 * a seeded shuffle, or stratified by a label so every part keeps the class proportions.
 */
import * as aq from "arquero";
import type { ColumnTable } from "arquero";
import { takeRows } from "../data/prepare.js";
import { Rng } from "../data/random.js";

/** The row-id column {@link addRowIds} adds: the row's position in the original table. */
export const ROW_ID = "_row";

/** The ways {@link partitionTable} can split a table. */
export const PARTITION_SCHEMES = ["contiguous", "shuffled", "stratified"] as const;
/** One of {@link PARTITION_SCHEMES}. */
export type PartitionScheme = (typeof PARTITION_SCHEMES)[number];

/** How to partition. */
export interface PartitionOptions {
  /** Default `"contiguous"`. */
  scheme?: PartitionScheme;
  /** Seed of the shuffle (`shuffled`, `stratified`); default 0. */
  seed?: number;
  /** The class column `stratified` keeps the proportions of. */
  label?: string;
}

/**
 * Add a row-id column (0, 1, 2, ... in table order) so parts can be checked for overlap and
 * coverage later. A table that already has the column is returned unchanged.
 */
export function addRowIds(table: ColumnTable, column = ROW_ID): ColumnTable {
  if (table.columnNames().includes(column)) return table;
  return table.assign(aq.table({ [column]: Int32Array.from({ length: table.numRows() }, (_, i) => i) }));
}

function checkParts(n: number, rows: number, what: string): void {
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what}: the number of parts must be a positive integer, but got ${n}.`);
  if (n > rows) throw new Error(`${what}: cannot split ${rows} rows into ${n} non-empty parts; use at most ${rows} parts.`);
}

/** Rows `[floor(k·N/n), floor((k+1)·N/n))` of `order` for each part k: sizes differ by at most one. */
function blocks(order: readonly number[], n: number): number[][] {
  return Array.from({ length: n }, (_, k) => order.slice(Math.floor((k * order.length) / n), Math.floor(((k + 1) * order.length) / n)));
}

/**
 * Row indices of each part, for `rows` rows. `labels` (one per row) is needed for `stratified`:
 * each class's rows are shuffled and dealt round-robin, starting where the previous class stopped,
 * so every part holds each class's count / n rows (within one) and the part sizes stay within one.
 */
export function partitionIndices(rows: number, n: number, options: { scheme?: PartitionScheme; seed?: number; labels?: ArrayLike<unknown> } = {}): number[][] {
  const scheme = options.scheme ?? "contiguous";
  if (!(PARTITION_SCHEMES as readonly string[]).includes(scheme)) {
    throw new Error(`partition: the scheme must be one of ${PARTITION_SCHEMES.join(", ")}, but got ${JSON.stringify(scheme)}.`);
  }
  checkParts(n, rows, "partition");
  const all = Array.from({ length: rows }, (_, i) => i);
  if (scheme === "contiguous") return blocks(all, n);
  const rng = new Rng(options.seed ?? 0);
  if (scheme === "shuffled") return blocks(rng.permutation(rows), n).map((p) => p.sort((a, b) => a - b));
  const labels = options.labels;
  if (!labels) throw new Error(`partition: the "stratified" scheme needs a label column.`);
  if (labels.length !== rows) throw new Error(`partition: ${labels.length} labels for ${rows} rows.`);
  const byClass = new Map<string, number[]>();
  for (let i = 0; i < rows; i++) {
    const key = String(labels[i]);
    const list = byClass.get(key) ?? [];
    list.push(i);
    byClass.set(key, list);
  }
  const parts: number[][] = Array.from({ length: n }, () => []);
  let next = 0;
  // Classes in sorted order: the result depends on the seed only, not on the table's row order of classes.
  for (const key of [...byClass.keys()].sort()) {
    const members = byClass.get(key) as number[];
    for (const j of rng.permutation(members.length)) {
      (parts[next] as number[]).push(members[j] as number);
      next = (next + 1) % n;
    }
  }
  return parts.map((p) => p.sort((a, b) => a - b));
}

/**
 * Partition a table into `n` disjoint parts that together hold every row once. Adds the row-id
 * column {@link ROW_ID} first (unless present) so {@link checkPartition} can verify the result.
 *
 * @example
 * const parts = partitionTable(loadPenguins(), 4, { scheme: "stratified", label: "species", seed: 1 });
 * checkPartition(parts, 4);
 */
export function partitionTable(table: ColumnTable, n: number, options: PartitionOptions = {}): ColumnTable[] {
  const scheme = options.scheme ?? "contiguous";
  let labels: ArrayLike<unknown> | undefined;
  if (scheme === "stratified") {
    if (!options.label) throw new Error(`partitionTable: the "stratified" scheme needs options.label, the class column (columns: ${table.columnNames().join(", ")}).`);
    if (!table.columnNames().includes(options.label)) {
      throw new Error(`partitionTable: no label column "${options.label}" in the table (it has ${table.columnNames().join(", ")}).`);
    }
    labels = table.array(options.label) as ArrayLike<unknown>;
  }
  const withIds = addRowIds(table);
  const idx = partitionIndices(withIds.numRows(), n, { scheme, seed: options.seed ?? 0, ...(labels ? { labels } : {}) });
  return idx.map((rows) => takeRows(withIds, rows));
}

/** What {@link checkPartition} verified. */
export interface PartitionCheck {
  /** Rows over all parts. */
  rows: number;
  /** Rows in each part. */
  sizes: number[];
}

/**
 * Verify that `parts` are `n` parts, pairwise disjoint, and together cover every row exactly once,
 * by their row-id column: ids `0 .. total-1` when `total` (a count or the original table) is given,
 * else `0 .. (rows in all parts)-1`. Throws naming the first offending row id and parts.
 */
export function checkPartition(parts: readonly ColumnTable[], n: number, options: { rowId?: string; total?: number | ColumnTable } = {}): PartitionCheck {
  const column = options.rowId ?? ROW_ID;
  if (!Array.isArray(parts)) throw new Error(`checkPartition: parts must be an array of tables, but got ${String(parts)}.`);
  if (!Number.isInteger(n) || n < 1) throw new Error(`checkPartition: n must be a positive integer, but got ${n}.`);
  if (parts.length !== n) throw new Error(`checkPartition: expected ${n} parts, but got ${parts.length}.`);
  const owner = new Map<number, number>();
  const sizes: number[] = [];
  parts.forEach((p, k) => {
    if (!p.columnNames().includes(column)) throw new Error(`checkPartition: part ${k} has no row-id column "${column}" (it has ${p.columnNames().join(", ")}); add one with addRowIds before partitioning.`);
    const ids = p.array(column) as ArrayLike<number>;
    for (let i = 0; i < ids.length; i++) {
      const id = Number(ids[i]);
      const prev = owner.get(id);
      if (prev !== undefined) throw new Error(`checkPartition: row ${id} is in part ${prev} and in part ${k}; parts must be disjoint.`);
      owner.set(id, k);
    }
    sizes.push(p.numRows());
  });
  const total = options.total === undefined ? owner.size : typeof options.total === "number" ? options.total : options.total.numRows();
  if (owner.size !== total) throw new Error(`checkPartition: the parts hold ${owner.size} rows but the table has ${total}; parts must cover every row.`);
  for (let id = 0; id < total; id++) {
    if (!owner.has(id)) throw new Error(`checkPartition: row ${id} is in no part; parts must cover every row 0..${total - 1}.`);
  }
  return { rows: owner.size, sizes };
}
