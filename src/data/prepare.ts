import * as tf from "@tensorflow/tfjs";
import * as aq from "arquero";
import type { ColumnTable } from "arquero";
import { Rng } from "./random.js";

/** A train/test split of one table. */
export interface Split {
  train: ColumnTable;
  test: ColumnTable;
}

export interface SplitOptions {
  /** Share of rows held out for testing, in (0, 1). Default 0.2. */
  testFraction?: number;
  seed?: number;
  /** Keep this column's class proportions the same in both parts. */
  stratify?: string;
}

function checkColumns(table: ColumnTable, columns: readonly string[], what: string) {
  const missing = columns.filter((c) => !table.columnNames().includes(c));
  if (missing.length) {
    throw new Error(`${what}: no column ${missing.map((c) => `"${c}"`).join(", ")} in the table (it has ${table.columnNames().join(", ")}).`);
  }
}

/** Split a table into train and test rows, seeded, optionally stratified by a label column. */
export function trainTestSplit(table: ColumnTable, options: SplitOptions = {}): Split {
  const fraction = options.testFraction ?? 0.2;
  if (!(fraction > 0 && fraction < 1)) throw new Error(`testFraction must be in (0, 1), but got ${fraction}.`);
  const rng = new Rng(options.seed ?? 0);
  const n = table.numRows();
  const groups = new Map<unknown, number[]>();
  if (options.stratify) {
    checkColumns(table, [options.stratify], "trainTestSplit stratify");
    const col = table.array(options.stratify) as ArrayLike<unknown>;
    for (let i = 0; i < n; i++) {
      const list = groups.get(col[i]) ?? [];
      list.push(i);
      groups.set(col[i], list);
    }
  } else {
    groups.set("all", Array.from({ length: n }, (_, i) => i));
  }
  const testRows: number[] = [];
  const trainRows: number[] = [];
  for (const rows of groups.values()) {
    const order = rng.permutation(rows.length).map((i) => rows[i] as number);
    const nTest = Math.round(rows.length * fraction);
    testRows.push(...order.slice(0, nTest));
    trainRows.push(...order.slice(nTest));
  }
  return { train: takeRows(table, trainRows.sort((a, b) => a - b)), test: takeRows(table, testRows.sort((a, b) => a - b)) };
}

/** The rows of `table` at the given indices, in that order. */
export function takeRows(table: ColumnTable, rows: readonly number[]): ColumnTable {
  const columns: Record<string, unknown[]> = {};
  for (const name of table.columnNames()) {
    const col = table.array(name) as ArrayLike<unknown>;
    columns[name] = rows.map((i) => col[i]);
  }
  // Rebuilt from columns: arquero filter expressions cannot capture a JS Set of row numbers.
  return aq.table(columns);
}

/** Mean and standard deviation of numeric columns, measured on training rows only. */
export interface Standardizer {
  columns: string[];
  mean: number[];
  std: number[];
  /** Apply to any table with these columns (training or test). */
  apply(table: ColumnTable): ColumnTable;
  /** Undo for one column's values, e.g. to report a prediction in grams. */
  invert(column: string, values: ArrayLike<number>): number[];
}

/**
 * Learn a standardisation (zero mean, unit variance) from `train` only, so no test information leaks
 * into the model; apply it to both parts.
 */
export function fitStandardizer(train: ColumnTable, columns: readonly string[]): Standardizer {
  checkColumns(train, columns, "fitStandardizer");
  const mean: number[] = [];
  const std: number[] = [];
  for (const c of columns) {
    const v = Array.from(train.array(c) as ArrayLike<number>, Number);
    if (v.length === 0) throw new Error(`fitStandardizer: the table has no rows.`);
    const m = v.reduce((a, b) => a + b, 0) / v.length;
    const s = Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length);
    if (!Number.isFinite(m) || !Number.isFinite(s)) throw new Error(`fitStandardizer: column "${c}" has non-numeric or missing values.`);
    mean.push(m);
    std.push(s > 0 ? s : 1);
  }
  const cols = [...columns];
  return {
    columns: cols,
    mean,
    std,
    apply(table) {
      checkColumns(table, cols, "Standardizer.apply");
      const data: Record<string, Float64Array> = {};
      cols.forEach((c, j) => {
        const v = table.array(c) as ArrayLike<number>;
        data[c] = Float64Array.from(v, (x) => (x - (mean[j] as number)) / (std[j] as number));
      });
      return table.assign(data);
    },
    invert(column, values) {
      const j = cols.indexOf(column);
      if (j < 0) throw new Error(`Standardizer.invert: "${column}" is not one of ${cols.join(", ")}.`);
      return Array.from(values, (x) => x * (std[j] as number) + (mean[j] as number));
    },
  };
}

/** Numeric columns as a float32 matrix [rows, columns]. */
export function toMatrix(table: ColumnTable, columns: readonly string[]): tf.Tensor2D {
  checkColumns(table, columns, "toMatrix");
  const n = table.numRows();
  const out = new Float32Array(n * columns.length);
  columns.forEach((c, j) => {
    const v = table.array(c) as ArrayLike<number>;
    for (let i = 0; i < n; i++) {
      const x = Number(v[i]);
      if (!Number.isFinite(x)) throw new Error(`toMatrix: column "${c}" row ${i} is ${v[i]}, not a finite number.`);
      out[i * columns.length + j] = x;
    }
  });
  return tf.tensor2d(out, [n, columns.length]);
}

/** A categorical column as integer class ids (int32 [rows]) and the sorted list of classes. */
export function toClassIds(table: ColumnTable, column: string, classes?: readonly string[]): { ids: tf.Tensor1D; classes: string[] } {
  checkColumns(table, [column], "toClassIds");
  const values = Array.from(table.array(column) as ArrayLike<unknown>, String);
  const list = classes ? [...classes] : [...new Set(values)].sort();
  const index = new Map(list.map((c, i) => [c, i]));
  const ids = values.map((v, i) => {
    const id = index.get(v);
    if (id === undefined) throw new Error(`toClassIds: column "${column}" row ${i} has the value "${v}", which is not one of ${list.join(", ")}.`);
    return id;
  });
  return { ids: tf.tensor1d(ids, "int32"), classes: list };
}
