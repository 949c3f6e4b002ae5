/**
 * The terminal progress of `fit`, as Keras prints it: `verbose` 0 prints nothing, 1 a line per epoch
 * that a terminal sees update in place while the epoch runs (batches done, ETA), 2 one plain line per
 * epoch. Everything goes to one stream, stderr in `fit`: progress is not the program's output, so a
 * script that prints results on stdout can pipe them while the user still sees training go by.
 */

/** How much `fit` prints: 0 nothing, 1 a progress line per epoch (live in a terminal), 2 one line per epoch. */
export type Verbosity = 0 | 1 | 2;

/** Where progress goes: a writable text stream; `isTTY` says whether it may be redrawn in place. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  /** Terminal width, for keeping the in-place line on one row. */
  columns?: number;
}

/** One finished epoch, as the progress line shows it. */
export interface EpochSummary {
  epoch: number;
  /** Mean training loss of each task over the epoch, in task order. */
  train: Record<string, number>;
  /** Validation loss and metrics of each task, when there is validation data. */
  validation?: Record<string, Record<string, number>>;
}

/** A number in 4 significant digits, exponent notation when very large or small. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-3 ? v.toExponential(2) : String(Number(v.toPrecision(4)));
}

/** A duration for people: 850ms, 12.3s, 4m05s, 1h02m. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "?";
  if (ms === 0) return "0s";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const whole = Math.round(s);
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, "0")}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * The line printed at the end of an epoch:
 * `epoch 3/20 - loss a 0.4521, b 1.203 - val a 0.498 accuracy 0.93, b 1.31 - 1.2s - ETA 20s`.
 */
export function epochLine(summary: EpochSummary, epochs: number, epochMs: number, etaMs: number): string {
  const parts = [`epoch ${summary.epoch}/${epochs}`];
  parts.push(`loss ${Object.entries(summary.train).map(([k, v]) => `${k} ${formatNumber(v)}`).join(", ")}`);
  if (summary.validation) {
    const val = Object.entries(summary.validation).map(([task, e]) => {
      const metrics = Object.entries(e).filter(([k]) => k !== "loss").map(([k, v]) => ` ${k} ${formatNumber(v)}`).join("");
      return `${task} ${formatNumber(e.loss as number)}${metrics}`;
    });
    parts.push(`val ${val.join(", ")}`);
  }
  parts.push(formatDuration(epochMs));
  parts.push(`ETA ${formatDuration(etaMs)}`);
  return parts.join(" - ");
}

/** Erase to the end of the terminal row (ANSI EL). */
const CLEAR_TO_END = "\x1b[K";

/**
 * Prints `fit`'s progress on a stream. The clock is a parameter so that tests can drive it; the ETA
 * is the mean epoch time so far times the epochs left (an upper bound under early stopping).
 */
export class ProgressPrinter {
  private epochStart = 0;
  private fitStart: number;
  private lastDraw = -Infinity;
  private drawn = false;
  private epochBatches = 0;

  constructor(
    private readonly verbose: Verbosity,
    private readonly epochs: number,
    private readonly stream: ProgressStream,
    private readonly now: () => number = () => performance.now(),
    /** At most one in-place redraw per this many milliseconds: a terminal write per batch would cost more than a small batch. */
    private readonly redrawMs = 100,
  ) {
    this.fitStart = now();
  }

  /** Whether anything is printed while an epoch runs (verbose 1 on a terminal). */
  get live(): boolean {
    return this.verbose === 1 && this.stream.isTTY === true;
  }

  startEpoch(batches: number): void {
    this.epochStart = this.now();
    this.epochBatches = batches;
    this.lastDraw = -Infinity;
  }

  /** After each batch: on a terminal with verbose 1, redraw `epoch 3/20 12/40 batches ETA 20s` in place. */
  batchEnd(epoch: number, done: number): void {
    if (!this.live) return;
    const t = this.now();
    if (done < this.epochBatches && t - this.lastDraw < this.redrawMs) return;
    this.lastDraw = t;
    const perBatch = (t - this.epochStart) / done;
    const epochLeft = perBatch * (this.epochBatches - done);
    const doneEpochs = epoch - 1;
    // Later epochs are as long as the ones finished, or, in the first epoch, as this one promises to be.
    const perEpoch = doneEpochs > 0 ? (this.epochStart - this.fitStart) / doneEpochs : perBatch * this.epochBatches;
    const eta = epochLeft + perEpoch * (this.epochs - epoch);
    this.draw(`epoch ${epoch}/${this.epochs} - ${done}/${this.epochBatches} batches - ETA ${formatDuration(eta)}`);
  }

  /** At the end of an epoch: the epoch's line (verbose 1 and 2), replacing the live line on a terminal. */
  endEpoch(summary: EpochSummary): void {
    if (this.verbose === 0) return;
    const t = this.now();
    const perEpoch = (t - this.fitStart) / summary.epoch;
    const line = epochLine(summary, this.epochs, t - this.epochStart, perEpoch * (this.epochs - summary.epoch));
    if (this.drawn) this.stream.write(`\r${line}${CLEAR_TO_END}\n`);
    else this.stream.write(`${line}\n`);
    this.drawn = false;
  }

  /** Training stopped (early stopping, an error): end a half-drawn live line so the next output starts on its own row. */
  close(note?: string): void {
    if (this.drawn) this.stream.write(note ? `\r${note}${CLEAR_TO_END}\n` : "\n");
    else if (note && this.verbose > 0) this.stream.write(`${note}\n`);
    this.drawn = false;
  }

  private draw(text: string): void {
    // A line longer than the terminal wraps, and "\r" then returns only to the start of its last row.
    const width = this.stream.columns;
    const fitted = width && text.length >= width ? text.slice(0, Math.max(0, width - 1)) : text;
    this.stream.write(`\r${fitted}${CLEAR_TO_END}`);
    this.drawn = true;
  }
}
