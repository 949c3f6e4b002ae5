/**
 * Gradient-conflict diagnostics from a per-task gradient matrix J (T x d): each task's gradient
 * norm, the pairwise cosine matrix, and the share of task pairs whose gradients conflict (cos < 0).
 * Pure functions over plain numbers, plus a recorder the trainer fills every N steps.
 */
import * as aq from "arquero";
import type { ColumnTable } from "arquero";

/** Euclidean norm of each row of J. */
export function gradientNorms(J: readonly (readonly number[])[]): number[] {
  return J.map((row) => Math.sqrt(row.reduce((a, x) => a + x * x, 0)));
}

/**
 * Pairwise cosine similarity of the rows of J (T x T, symmetric, 1 on the diagonal). A pair with a
 * zero-norm row has no direction, so its cosine is NaN (the diagonal of a zero row too).
 */
export function cosineMatrix(J: readonly (readonly number[])[]): number[][] {
  if (!Array.isArray(J) || J.length === 0) throw new Error(`cosineMatrix: J must be a non-empty array of rows, but got ${String(J)}.`);
  const d = J[0]!.length;
  J.forEach((row, i) => {
    if (row.length !== d) throw new Error(`cosineMatrix: J must be rectangular: row 0 has ${d} columns but row ${i} has ${row.length}.`);
  });
  const norms = gradientNorms(J);
  return J.map((a, i) =>
    J.map((b, j) => {
      if (norms[i] === 0 || norms[j] === 0) return NaN;
      let dot = 0;
      for (let k = 0; k < d; k++) dot += a[k]! * b[k]!;
      // Rounding can push |cos| a hair past 1.
      return Math.max(-1, Math.min(1, dot / (norms[i]! * norms[j]!)));
    }),
  );
}

/** Share of unordered task pairs (i < j) with cos < 0, among pairs with a defined cosine; 0 for one task. */
export function conflictShare(cosines: readonly (readonly number[])[]): number {
  let pairs = 0;
  let conflicts = 0;
  for (let i = 0; i < cosines.length; i++) {
    for (let j = i + 1; j < cosines.length; j++) {
      const c = cosines[i]![j]!;
      if (!Number.isFinite(c)) continue;
      pairs++;
      if (c < 0) conflicts++;
    }
  }
  return pairs === 0 ? 0 : conflicts / pairs;
}

/** Everything the diagnostics compute from one J. */
export interface GradientDiagnostics {
  norms: number[];
  cosines: number[][];
  conflictShare: number;
}

/** Norms, cosine matrix and conflict share of J in one call. */
export function gradientDiagnostics(J: readonly (readonly number[])[]): GradientDiagnostics {
  const cosines = cosineMatrix(J);
  return { norms: gradientNorms(J), cosines, conflictShare: conflictShare(cosines) };
}

/** One row of the cosine table: every ordered pair, diagonal included, so a heatmap is complete. */
export interface CosineRow { step: number; task_i: string; task_j: string; cosine: number | null }
/** One row of the norm table. */
export interface NormRow { step: number; task: string; gradNorm: number }
/** One row of the conflict table. */
export interface ConflictRow { step: number; conflictShare: number; pairs: number }

/** The recorded diagnostics as arquero tables. */
export interface DiagnosticsTables {
  /** step, task_i, task_j, cosine (null where undefined). */
  cosines: ColumnTable;
  /** step, task, gradNorm. */
  norms: ColumnTable;
  /** step, conflictShare, pairs. */
  conflicts: ColumnTable;
}

/** Collects diagnostics rows step by step (what `JointTrainer` does with `diagnostics: true`). */
export class DiagnosticsRecorder {
  readonly cosineRows: CosineRow[] = [];
  readonly normRows: NormRow[] = [];
  readonly conflictRows: ConflictRow[] = [];

  constructor(readonly tasks: readonly string[]) {}

  /** Record the diagnostics of J (rows in task order) at a step; returns them. */
  record(step: number, J: readonly (readonly number[])[]): GradientDiagnostics {
    if (J.length !== this.tasks.length) throw new Error(`DiagnosticsRecorder: J has ${J.length} rows but there are ${this.tasks.length} tasks.`);
    const diag = gradientDiagnostics(J);
    const T = this.tasks.length;
    for (let i = 0; i < T; i++) {
      this.normRows.push({ step, task: this.tasks[i]!, gradNorm: diag.norms[i]! });
      for (let j = 0; j < T; j++) {
        const c = diag.cosines[i]![j]!;
        this.cosineRows.push({ step, task_i: this.tasks[i]!, task_j: this.tasks[j]!, cosine: Number.isFinite(c) ? c : null });
      }
    }
    this.conflictRows.push({ step, conflictShare: diag.conflictShare, pairs: (T * (T - 1)) / 2 });
    return diag;
  }

  /** The rows so far as arquero tables (with their columns even when empty). */
  tables(): DiagnosticsTables {
    const table = <R extends object>(rows: R[], names: string[]) =>
      rows.length ? aq.from(rows, names) : aq.table(Object.fromEntries(names.map((n) => [n, [] as unknown[]])));
    return {
      cosines: table(this.cosineRows, ["step", "task_i", "task_j", "cosine"]),
      norms: table(this.normRows, ["step", "task", "gradNorm"]),
      conflicts: table(this.conflictRows, ["step", "conflictShare", "pairs"]),
    };
  }
}
