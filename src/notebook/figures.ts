import { displayBundle } from "../charts/show.js";

/** MIME type under which a notebook reports its key figures; the cookbook report collects them. */
export const FIGURES_MIME = "application/vnd.jointly.figures+json";

/** A key figure: a number (shown to 4 significant digits), a string or a boolean. */
export type Figure = number | string | boolean;

/** A key figure as text: 4 significant digits, exponent notation for very large or small numbers. */
export function formatFigure(value: Figure): string {
  if (typeof value !== "number") return String(value);
  if (!Number.isFinite(value)) return String(value);
  // Counts are shown whole (12288 images, not 12290).
  if (Number.isInteger(value) && Math.abs(value) < 1e9) return String(value);
  return Math.abs(value) >= 1e5 || (Math.abs(value) < 1e-3 && value !== 0) ? value.toExponential(3) : String(Number(value.toPrecision(4)));
}

/** Text made safe to put in HTML. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] as string);
}

/**
 * Report a notebook's key figures. They show as a small table in the notebook and are collected
 * into the cookbook's HTML report (from the executed notebook's outputs).
 *
 * @example
 * reportFigures({ "species accuracy": 0.97, "body mass R²": 0.83 });
 */
export function reportFigures(figures: Record<string, Figure>): void {
  const entries = Object.entries(figures);
  for (const [name, value] of entries) {
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new Error(`Key figure "${name}" must be a finite number, but got ${value}.`);
    }
  }
  const rows = entries.map(([k, v]) => `<tr><th style="text-align:left">${escapeHtml(k)}</th><td>${escapeHtml(formatFigure(v))}</td></tr>`);
  displayBundle({
    data: {
      [FIGURES_MIME]: figures,
      "text/html": `<table class="jointly-figures">${rows.join("")}</table>`,
      "text/plain": entries.map(([k, v]) => `${k}: ${formatFigure(v)}`).join("\n"),
    },
  });
}

/** Bounds for {@link claim}. */
export interface ClaimBounds {
  atLeast?: number;
  atMost?: number;
  /** Strict versions of the bounds. */
  above?: number;
  below?: number;
}

/**
 * Check a notebook's claim about a measured number. Throws (failing the cell, and so the cookbook and
 * the test run) with the name, the value and the bound when it does not hold; prints a line when it does.
 *
 * @example
 * claim("species accuracy on the test set", accuracy, { atLeast: 0.9 });
 */
export function claim(name: string, value: number, bounds: ClaimBounds): void {
  const parts: [string, number, (v: number, b: number) => boolean][] = [];
  if (bounds.atLeast !== undefined) parts.push([">=", bounds.atLeast, (v, b) => v >= b]);
  if (bounds.above !== undefined) parts.push([">", bounds.above, (v, b) => v > b]);
  if (bounds.atMost !== undefined) parts.push(["<=", bounds.atMost, (v, b) => v <= b]);
  if (bounds.below !== undefined) parts.push(["<", bounds.below, (v, b) => v < b]);
  if (parts.length === 0) throw new Error(`claim("${name}") needs at least one bound (atLeast, atMost, above, below).`);
  const expected = parts.map(([op, b]) => `${op} ${b}`).join(" and ");
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new Error(`Claim failed: ${name} is ${value}, not a number (expected ${expected}).`);
  }
  if (!parts.every(([, b, ok]) => ok(value, b))) {
    throw new Error(`Claim failed: ${name} = ${formatFigure(value)}, expected ${expected}.`);
  }
  // Returns nothing, so a notebook cell that ends with a claim prints only the check line.
  console.log(`✓ ${name} = ${formatFigure(value)} (${expected})`);
}
