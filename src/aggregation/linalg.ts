/**
 * Small dense linear algebra on plain `number[][]` for the aggregators: the matrices are T x T
 * (T = number of tasks, a handful) or T x d, so clarity wins over speed. No TensorFlow.js here.
 */
import { Rng } from "../data/random.js";

/** Result of every aggregator: direction = weightsᵀ J unless the method's doc says otherwise. */
export interface Aggregation {
  direction: number[];
  weights: number[];
}

/** Throws unless `J` is a non-empty rectangular matrix of finite numbers; returns [rows, cols]. */
export function checkMatrix(J: unknown, name = "J"): [number, number] {
  if (!Array.isArray(J) || J.length === 0) throw new Error(`${name} must be a non-empty array of rows, but got ${describe(J)}.`);
  const first = J[0];
  if (!Array.isArray(first) || first.length === 0) throw new Error(`${name} row 0 must be a non-empty array, but got ${describe(first)}.`);
  const cols = first.length;
  J.forEach((row: unknown, i) => {
    if (!Array.isArray(row)) throw new Error(`${name} row ${i} must be an array, but got ${describe(row)}.`);
    if (row.length !== cols) throw new Error(`${name} must be rectangular: row 0 has ${cols} columns but row ${i} has ${row.length}.`);
    row.forEach((v: unknown, j) => {
      if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${name}[${i}][${j}] must be a finite number, but got ${describe(v)}.`);
    });
  });
  return [J.length, cols];
}

/** Throws unless `G` is a square symmetric (up to rounding) finite matrix, as a Gramian must be. */
export function checkGramian(G: unknown, name = "G"): number {
  const [n, m] = checkMatrix(G, name);
  if (n !== m) throw new Error(`${name} must be square, but got ${n} x ${m}.`);
  const A = G as number[][];
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const tol = 1e-9 * (Math.abs(A[i][i]) + Math.abs(A[j][j]) + 1e-300);
      if (Math.abs(A[i][j] - A[j][i]) > tol) throw new Error(`${name} must be symmetric, but ${name}[${i}][${j}] = ${A[i][j]} and ${name}[${j}][${i}] = ${A[j][i]}.`);
    }
  }
  return n;
}

/** A value as it reads in an error message. */
export function describe(v: unknown): string {
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

/** Throws `"<name> must be in <range>, but got <value>."` unless `ok(value)`; returns the value. */
export function checkOption(name: string, value: unknown, range: string, ok: (v: number) => boolean): number {
  if (typeof value !== "number" || !Number.isFinite(value) || !ok(value)) throw new Error(`${name} must be ${range}, but got ${describe(value)}.`);
  return value;
}

export function dot(a: number[], b: number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export const norm = (a: number[]): number => Math.sqrt(dot(a, a));

/** G = J Jᵀ. */
export function gramian(J: number[][]): number[][] {
  const T = J.length;
  const G = J.map(() => new Array<number>(T).fill(0));
  for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) G[i][j] = G[j][i] = dot(J[i], J[j]);
  return G;
}

export const matVec = (A: number[][], x: number[]): number[] => A.map((row) => dot(row, x));

/** weightsᵀ J: the weighted sum of the rows. */
export function combine(weights: number[], J: number[][]): number[] {
  const out = new Array<number>(J[0].length).fill(0);
  weights.forEach((w, i) => J[i].forEach((v, k) => (out[k] += w * v)));
  return out;
}

export const identity = (n: number): number[][] => Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));

export const maxDiagonal = (G: number[][]): number => G.reduce((m, row, i) => Math.max(m, row[i]), 0);

/** Solves A x = b by Gaussian elimination with partial pivoting; throws on a singular A. */
export function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]]);
  const scale = Math.max(...A.flat().map(Math.abs), 1e-300);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    // A pivot at rounding level means A is singular for our purposes; callers fall back to pinv.
    if (Math.abs(M[p][c]) <= 1e-14 * scale) throw new Error(`solve: matrix is singular (pivot ${M[p][c]} in column ${c}).`);
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = c + 1; r < n; r++) {
      const f = M[r][c] / M[c][c];
      for (let k = c; k <= n; k++) M[r][k] -= f * M[c][k];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let k = r + 1; k < n; k++) s -= M[r][k] * x[k];
    x[r] = s / M[r][r];
  }
  return x;
}

/**
 * Symmetric eigendecomposition by cyclic Jacobi rotations: A = V diag(values) Vᵀ, eigenvectors are
 * the columns of `vectors`, values sorted ascending. Jacobi is slow for big matrices but accurate
 * for the tiny ones here, including small eigenvalues.
 */
export function symmetricEigen(A: number[][], maxSweeps = 100): { values: number[]; vectors: number[][] } {
  const n = A.length;
  const a = A.map((row) => [...row]);
  const v = identity(n);
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p][q] * a[p][q];
    if (off <= 1e-30 * Math.max(1e-300, a.reduce((s, row, i) => s + row[i] * row[i], 0))) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (a[p][q] === 0) continue;
        // Rotation angle that zeroes a[p][q] (stable form with |t| <= 1).
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k][p], akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k], aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p], vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = a.map((_, i) => i).sort((i, j) => a[i][i] - a[j][j]);
  return { values: order.map((i) => a[i][i]), vectors: v.map((row) => order.map((i) => row[i])) };
}

/** Relative cut-off below which an eigenvalue of a Gramian counts as zero. */
export const RANK_TOL = 1e-10;

/** Moore-Penrose pseudo-inverse of a symmetric matrix via its eigendecomposition. */
export function pinvSymmetric(A: number[][], rcond = RANK_TOL): number[][] {
  const n = A.length;
  const { values, vectors } = symmetricEigen(A);
  const cut = rcond * Math.max(...values.map(Math.abs), 0);
  const P = A.map(() => new Array<number>(n).fill(0));
  values.forEach((lambda, k) => {
    if (Math.abs(lambda) <= cut || lambda === 0) return;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) P[i][j] += (vectors[i][k] * vectors[j][k]) / lambda;
  });
  return P;
}

/** Weights w minimising ||Jᵀ w - direction||, of minimum norm: w = pinv(G) J direction. */
export function leastSquaresWeights(J: number[][], direction: number[], G = gramian(J)): number[] {
  return matVec(pinvSymmetric(G), matVec(J, direction));
}

/** Euclidean projection onto the probability simplex (sort-based, Held et al. 1974). */
export function projectSimplex(v: number[]): number[] {
  const u = [...v].sort((a, b) => b - a);
  let cumulative = 0;
  let theta = 0;
  for (let k = 0; k < u.length; k++) {
    cumulative += u[k];
    const t = (cumulative - 1) / (k + 1);
    if (u[k] - t > 0) theta = t;
  }
  return v.map((x) => Math.max(x - theta, 0));
}

/**
 * Seeded PRNG (mulberry32: 32-bit state, good enough for shuffles and dropout masks, not for
 * cryptography). Returns a function giving floats in [0, 1).
 */
export function seededRandom(seed: number): () => number {
  // One generator for the whole library: the same mulberry32 as data/random.ts's Rng.
  const rng = new Rng(seed >>> 0);
  return () => rng.next();
}

/** Fisher-Yates shuffle of a copy of `items`. */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Validates an integer seed option (the PRNG uses its low 32 bits). */
export const checkSeed = (who: string, seed: unknown): number =>
  checkOption(`${who} seed`, seed, "an integer", (v) => Number.isInteger(v));
