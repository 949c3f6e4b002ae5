/**
 * The eight benchmark workloads of `npm run bench`, each in the forms that are timed:
 *
 * - `jointly`: the library's way (JointTrainer; W4 AlternatingTrainer with a forward pass written with
 *   jointly's `dense` and `mse`; W5 JointTrainer on a Layers model with the
 *   "gradnorm" weighting; W7/W8 JointTrainer on conv Layers models) with stock `tf.train.adam`;
 * - `fused`: the same with the library's `fusedAdam` (one native pass per variable with the addon);
 * - `raw`: a hand-written TensorFlow.js loop (`tf.variableGrads` + `optimizer.applyGradients`);
 * - `ensemble` (W6 only): 64 models as stacked weights and rank-3 `tf.matMul`s, one Adam.
 *
 * Every form of a workload starts from the same weights and data (drawn from fixed seeds here, not
 * from the layers' own initialisers), so their first-step losses agree and timings compare like with
 * like. A step is forward, backward, optimizer update and reading the loss back as a number; `step()`
 * returns the losses it read.
 */
import * as tf from "@tensorflow/tfjs";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { AlternatingTrainer } from "../src/train/alternating.js";
import { GradNorm } from "../src/weighting/gradnorm.js";
import { fusedAdam } from "../src/optimizers/index.js";
import { dense } from "../src/ops/dense.js";
import { mse } from "../src/losses/per-task.js";
import { trainable, type Trainable } from "../src/train/model.js";
import { TableEmbedding } from "../src/layers/embedding.js";

export type WorkloadId = "W1" | "W2" | "W3" | "W4" | "W5" | "W6" | "W7" | "W8";
export const WORKLOAD_IDS: WorkloadId[] = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"];
/** The conv workloads (their training needs the conv backprop kernels on the backend). */
export const CONV_WORKLOAD_IDS = ["W7", "W8"] as const;
export type ConvWorkloadId = (typeof CONV_WORKLOAD_IDS)[number];

/** One way of training a workload: `step()` runs one training step and returns the losses read back. */
export interface Runner {
  step(): number[];
  dispose(): void;
}

export type Form = "jointly" | "fused" | "raw" | "ensemble";

/** The library forms: stock Adam and fused Adam. */
export const LIBRARY_FORMS: readonly Form[] = ["jointly", "fused"];

export interface WorkloadDef {
  id: WorkloadId;
  title: string;
  /** Forms available; `jointly` is absent where the library has no API for the workload yet. */
  forms: Form[];
  /**
   * Build one form. `batch` overrides the defined batch size (the tests use tiny batches); `members`
   * (W6 only) builds models from..to-1 of the fleet, with their own seeds (for splitting it across workers).
   */
  make(form: Form, opts?: { batch?: number; members?: [number, number] }): Runner;
}

const LR = 1e-3;

/** The optimizer of a library form: stock Adam for `jointly`, the library's fused Adam for `fused`. */
const adamFor = (form: Form, lr = LR): tf.Optimizer => (form === "fused" ? fusedAdam(lr) : tf.train.adam(lr));

// ---------------------------------------------------------------------------------------------
// Shared helpers: seeded weights and data, a raw step, losses written out with plain ops.

let uid = 0;
/** A name no other layer in this process has (layer and variable names must not collide). */
const fresh = (stem: string): string => `bench_${stem}_${++uid}`;

/** Glorot-uniform kernel and zero bias from a seed: the same values for every form. */
function denseInit(fanIn: number, fanOut: number, seed: number): [tf.Tensor2D, tf.Tensor1D] {
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  return [tf.randomUniform([fanIn, fanOut], -limit, limit, "float32", seed) as tf.Tensor2D, tf.zeros([fanOut]) as tf.Tensor1D];
}

function tableInit(rows: number, cols: number, seed: number): tf.Tensor2D {
  return tf.randomUniform([rows, cols], -0.05, 0.05, "float32", seed) as tf.Tensor2D;
}

/** Copy seeded values into a built layer, then free them. */
function setLayer(layer: tf.layers.Layer, values: tf.Tensor[]): void {
  layer.setWeights(values);
  tf.dispose(values);
}

/** Raw trainable dense parameters. */
interface DenseVars {
  k: tf.Variable;
  b: tf.Variable;
}
function denseVars(fanIn: number, fanOut: number, seed: number): DenseVars {
  const [k, b] = denseInit(fanIn, fanOut, seed);
  const out = { k: tf.variable(k), b: tf.variable(b) };
  tf.dispose([k, b]);
  return out;
}
const varsOf = (...ds: DenseVars[]): tf.Variable[] => ds.flatMap((d) => [d.k, d.b]);
function applyDense(x: tf.Tensor, d: DenseVars, relu: boolean): tf.Tensor2D {
  return tf.fused.matMul({ a: x as tf.Tensor2D, b: d.k as tf.Tensor2D, bias: d.b, activation: relu ? "relu" : "linear" }) as tf.Tensor2D;
}

const meanSq = (pred: tf.Tensor, y: tf.Tensor): tf.Scalar => tf.mean(tf.squaredDifference(pred, y));
/** Softmax cross-entropy against one-hot rows, mean over rows. */
const softmaxCE = (oneHot: tf.Tensor, logits: tf.Tensor): tf.Scalar => tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits)), -1))) as tf.Scalar;
/** Sigmoid cross-entropy on logits, the stable form max(x,0) - x z + log(1 + exp(-|x|)), mean. */
const sigmoidCE = (z: tf.Tensor, x: tf.Tensor): tf.Scalar =>
  tf.mean(tf.add(tf.sub(tf.relu(x), tf.mul(x, z)), tf.log1p(tf.exp(tf.neg(tf.abs(x))))));

/** One raw step: gradients of `f` for `vars`, applied by `opt`; the loss read back as a number. */
function rawStep(f: () => tf.Scalar, vars: tf.Variable[], opt: tf.Optimizer): number {
  const { value, grads } = tf.variableGrads(f, vars);
  opt.applyGradients(grads);
  const loss = value.dataSync()[0] as number;
  tf.dispose(grads);
  value.dispose();
  return loss;
}

/**
 * Rows of a table by id, differentiable on wasm: `tf.gather`'s own gradient needs the
 * UnsortedSegmentSum kernel, which tfjs-wasm lacks, so the gradient is scattered back by hand
 * (`scatterND` adds the rows of ids that repeat).
 */
function lookup(table: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor2D {
  const [rows, cols] = table.shape;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const t = args[0] as tf.Tensor2D;
    const i = args[1] as tf.Tensor1D;
    const save = args[2] as tf.GradSaveFunc;
    save([i]);
    return {
      value: tf.gather(t, i),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const idx = saved[0] as tf.Tensor1D;
        return [tf.scatterND(tf.expandDims(idx, 1), dy as tf.Tensor2D, [rows, cols]), tf.zerosLike(idx)];
      },
    };
  });
  return op(table, ids) as tf.Tensor2D;
}

function disposeAll(...things: (tf.Tensor | tf.Tensor[] | tf.Optimizer | tf.LayersModel | undefined)[]): void {
  for (const t of things) {
    if (t === undefined) continue;
    if (t instanceof tf.Optimizer) t.dispose();
    else if (t instanceof tf.LayersModel) t.dispose();
    else tf.dispose(t);
  }
}

// ---------------------------------------------------------------------------------------------
// W1 / W2: two-head MLP. Seeds: kernels 11..14, x 21, class labels 22, regression targets 23.

function twoHeadData(batch: number) {
  const x = tf.randomNormal([batch, 32], 0, 1, "float32", 21);
  const labels = tf.randomUniform([batch], 0, 2, "int32", 22) as tf.Tensor1D;
  const yReg = tf.randomNormal([batch, 1], 0, 1, "float32", 23);
  return { x, labels, yReg };
}

function twoHead(id: "W1" | "W2", width: number, batchDefault: number): WorkloadDef {
  return {
    id,
    title: `two-head MLP 32-${width}-${width}, batch ${batchDefault}`,
    forms: ["jointly", "fused", "raw"],
    make(form, opts = {}) {
      const batch = opts.batch ?? batchDefault;
      const { x, labels, yReg } = twoHeadData(batch);
      if (form === "jointly" || form === "fused") {
        const input = tf.input({ shape: [32] });
        const l1 = tf.layers.dense({ units: width, activation: "relu", name: fresh("h1") });
        const l2 = tf.layers.dense({ units: width, activation: "relu", name: fresh("h2") });
        const lc = tf.layers.dense({ units: 2, name: fresh("cls") });
        const lr = tf.layers.dense({ units: 1, name: fresh("reg") });
        const h = l2.apply(l1.apply(input)) as tf.SymbolicTensor;
        const model = tf.model({ inputs: input, outputs: [lc.apply(h) as tf.SymbolicTensor, lr.apply(h) as tf.SymbolicTensor] });
        setLayer(l1, denseInit(32, width, 11));
        setLayer(l2, denseInit(width, width, 12));
        setLayer(lc, denseInit(width, 2, 13));
        setLayer(lr, denseInit(width, 1, 14));
        const [outCls, outReg] = model.outputNames as [string, string];
        const opt = adamFor(form);
        const trainer = new JointTrainer({
          model,
          tasks: [
            { name: "cls", output: outCls, loss: "softmaxCrossEntropy", weight: 0.7 },
            { name: "reg", output: outReg, loss: "mse", weight: 0.3 },
          ],
          optimizer: opt,
        });
        return {
          // Class ids, as a user passes them (the loss takes ids or one-hot rows).
          step: () => [trainer.step(x, { cls: labels, reg: yReg }).total],
          dispose: () => {
            trainer.dispose();
            disposeAll(x, labels, yReg, opt, model);
          },
        };
      }
      if (form !== "raw") throw new Error(`${id} has no ${form} form`);
      const d1 = denseVars(32, width, 11);
      const d2 = denseVars(width, width, 12);
      const dc = denseVars(width, 2, 13);
      const dr = denseVars(width, 1, 14);
      const vars = varsOf(d1, d2, dc, dr);
      const oneHot = tf.oneHot(labels, 2);
      const opt = tf.train.adam(LR);
      const loss = (): tf.Scalar => {
        const h = applyDense(applyDense(x, d1, true), d2, true);
        const ce = softmaxCE(oneHot, applyDense(h, dc, false));
        const se = meanSq(applyDense(h, dr, false), yReg);
        return tf.add(tf.mul(0.7, ce), tf.mul(0.3, se));
      };
      return {
        step: () => [rawStep(loss, vars, opt)],
        dispose: () => disposeAll(x, labels, yReg, oneHot, vars, opt),
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// W3: user/item tables shared by two models. Seeds: tables 31, 32; A 33, 34; B 35, 36; data 41..45.

const USERS = 10000;
const ITEMS = 5000;
const EMB = 64;
const CTX = 16;

const W3: WorkloadDef = {
  id: "W3",
  title: `shared embeddings ${USERS}x${EMB} + ${ITEMS}x${EMB}, two models, batch 1024`,
  forms: ["jointly", "fused", "raw"],
  make(form, opts = {}) {
    const batch = opts.batch ?? 1024;
    const users = tf.randomUniform([batch], 0, USERS, "int32", 41) as tf.Tensor1D;
    const items = tf.randomUniform([batch], 0, ITEMS, "int32", 42) as tf.Tensor1D;
    const ctx = tf.randomNormal([batch, CTX], 0, 1, "float32", 43);
    const yA = tf.tidy(() => tf.cast(tf.randomUniform([batch, 1], 0, 2, "int32", 44), "float32"));
    const yB = tf.tidy(() => tf.cast(tf.randomUniform([batch, 1], 0, 2, "int32", 45), "float32"));
    const data = [users, items, ctx, yA, yB];
    if (form === "jointly" || form === "fused") {
      const userTable = new TableEmbedding({ inputDim: USERS, outputDim: EMB, name: fresh("user") });
      const itemTable = new TableEmbedding({ inputDim: ITEMS, outputDim: EMB, name: fresh("item") });
      const flat = tf.layers.flatten();
      const embed = (u: tf.SymbolicTensor, i: tf.SymbolicTensor): tf.SymbolicTensor[] => [
        flat.apply(userTable.apply(u)) as tf.SymbolicTensor,
        flat.apply(itemTable.apply(i)) as tf.SymbolicTensor,
      ];
      const aH = tf.layers.dense({ units: 64, activation: "relu", name: fresh("a_h") });
      const aO = tf.layers.dense({ units: 1, name: fresh("a_out") });
      const uA = tf.input({ shape: [1], dtype: "int32" });
      const iA = tf.input({ shape: [1], dtype: "int32" });
      const catA = tf.layers.concatenate().apply(embed(uA, iA)) as tf.SymbolicTensor;
      const modelA = tf.model({ inputs: [uA, iA], outputs: aO.apply(aH.apply(catA)) as tf.SymbolicTensor });
      const bH = tf.layers.dense({ units: 64, activation: "relu", name: fresh("b_h") });
      const bO = tf.layers.dense({ units: 1, name: fresh("b_out") });
      const uB = tf.input({ shape: [1], dtype: "int32" });
      const iB = tf.input({ shape: [1], dtype: "int32" });
      const cB = tf.input({ shape: [CTX] });
      const catB = tf.layers.concatenate().apply([...embed(uB, iB), cB]) as tf.SymbolicTensor;
      const modelB = tf.model({ inputs: [uB, iB, cB], outputs: bO.apply(bH.apply(catB)) as tf.SymbolicTensor });
      setLayer(userTable, [tableInit(USERS, EMB, 31)]);
      setLayer(itemTable, [tableInit(ITEMS, EMB, 32)]);
      setLayer(aH, denseInit(2 * EMB, 64, 33));
      setLayer(aO, denseInit(64, 1, 34));
      setLayer(bH, denseInit(2 * EMB + CTX, 64, 35));
      setLayer(bO, denseInit(64, 1, 36));
      const u2 = tf.expandDims(users, 1);
      const i2 = tf.expandDims(items, 1);
      const inputs = { user: u2, item: i2, ctx };
      const model = trainable({ a: modelA, b: modelB }, (key, x) => {
        const r = x as Record<string, tf.Tensor>;
        return key === "a" ? [r.user as tf.Tensor, r.item as tf.Tensor] : [r.user as tf.Tensor, r.item as tf.Tensor, r.ctx as tf.Tensor];
      });
      const opt = adamFor(form);
      const trainer = new JointTrainer({
        model,
        tasks: [
          { name: "a", loss: "binaryCrossEntropy" },
          { name: "b", loss: "binaryCrossEntropy" },
        ],
        optimizer: opt,
      });
      return {
        step: () => [trainer.step(inputs, { a: yA, b: yB }).total],
        dispose: () => {
          trainer.dispose();
          disposeAll(data, u2, i2, opt, modelA, modelB);
        },
      };
    }
    if (form !== "raw") throw new Error(`W3 has no ${form} form`);
    const ut0 = tableInit(USERS, EMB, 31);
    const it0 = tableInit(ITEMS, EMB, 32);
    const userT = tf.variable(ut0);
    const itemT = tf.variable(it0);
    tf.dispose([ut0, it0]);
    const aH = denseVars(2 * EMB, 64, 33);
    const aO = denseVars(64, 1, 34);
    const bH = denseVars(2 * EMB + CTX, 64, 35);
    const bO = denseVars(64, 1, 36);
    const vars = [userT, itemT, ...varsOf(aH, aO, bH, bO)];
    const opt = tf.train.adam(LR);
    const loss = (): tf.Scalar => {
      const u = lookup(userT, users);
      const i = lookup(itemT, items);
      const logitA = applyDense(applyDense(tf.concat([u, i], 1), aH, true), aO, false);
      const logitB = applyDense(applyDense(tf.concat([u, i, ctx], 1), bH, true), bO, false);
      return tf.add(sigmoidCE(yA, logitA), sigmoidCE(yB, logitB));
    };
    return {
      step: () => [rawStep(loss, vars, opt)],
      dispose: () => disposeAll(data, vars, opt),
    };
  },
};

// ---------------------------------------------------------------------------------------------
// W4: alternating A/B updates. Seeds: A 51, 52; B 53, 54; x 55, y 56.

const W4: WorkloadDef = {
  id: "W4",
  title: "alternating A (32-64-16) / B (16-64-1), two Adams, batch 512",
  forms: ["jointly", "fused", "raw"],
  make(form, opts = {}) {
    const batch = opts.batch ?? 512;
    const x = tf.randomNormal([batch, 32], 0, 1, "float32", 55);
    const y = tf.randomNormal([batch, 1], 0, 1, "float32", 56);
    const a1 = denseVars(32, 64, 51);
    const a2 = denseVars(64, 16, 52);
    const b1 = denseVars(16, 64, 53);
    const b2 = denseVars(64, 1, 54);
    const varsA = varsOf(a1, a2);
    const varsB = varsOf(b1, b2);
    const netA = (): tf.Tensor2D => applyDense(applyDense(x, a1, true), a2, false);
    const netB = (z: tf.Tensor): tf.Tensor2D => applyDense(applyDense(z, b1, true), b2, false);
    if (form === "jointly" || form === "fused") {
      // One bench step = A's turn then B's turn. Each turn is a fresh forward pass of A and B with
      // only that turn's variables differentiated, which is the raw loop's computation: A through
      // frozen B, then B on the updated A's output (A's ops are outside B's gradient path).
      const optA = adamFor(form);
      const optB = adamFor(form);
      // The library's way writes the forward pass with jointly's `dense` and its `mse` loss (fused
      // ops on wasm with the native addon; tf.fused.matMul and composite ops elsewhere).
      const libA = (): tf.Tensor => dense(dense(x, a1.k, a1.b, "relu"), a2.k, a2.b);
      const libB = (z: tf.Tensor): tf.Tensor => dense(dense(z, b1.k, b1.b, "relu"), b2.k, b2.b);
      const trainer = new AlternatingTrainer<null>({
        forward: () => ({ out: libB(libA()) }),
        turns: [
          { name: "A", variables: varsA, optimizer: optA, loss: (o) => mse(y, o.out as tf.Tensor) },
          { name: "B", variables: varsB, optimizer: optB, loss: (o) => mse(y, o.out as tf.Tensor) },
        ],
      });
      return {
        step: () => [trainer.step(null).total, trainer.step(null).total],
        dispose: () => disposeAll(x, y, varsA, varsB, optA, optB),
      };
    }
    if (form !== "raw") throw new Error(`W4 has no ${form} form`);
    const optA = tf.train.adam(LR);
    const optB = tf.train.adam(LR);
    return {
      step: () => {
        // A through B; only A's variables get gradients, so B is frozen.
        const lossA = rawStep(() => meanSq(netB(netA()), y), varsA, optA);
        // A fresh forward pass of the updated A, held constant; only B is updated.
        const z = tf.tidy(netA);
        const lossB = rawStep(() => meanSq(netB(z), y), varsB, optB);
        z.dispose();
        return [lossA, lossB];
      },
      dispose: () => disposeAll(x, y, varsA, varsB, optA, optB),
    };
  },
};

// ---------------------------------------------------------------------------------------------
// W5: GradNorm over three regression heads. Seeds: trunk 61, 62; heads 63..65; x 66; y 67..69.
//
// GradNorm as the library defines it (src/weighting/gradnorm.ts): weights w (start 1, sum 3) scale
// the task losses; g_i = ||dL_i/dW|| on the trunk's last kernel W at this step's parameters; with
// G_i = w_i g_i, r_i the relative inverse training rates and the target C_i = mean(G) r_i^alpha held
// constant, w takes one Adam step (lr 1e-2) along d/dw sum_i |G_i - C_i| = sign(G_j - C_j) g_j, then
// is floored at 1e-6 and renormalised to sum 3. (The original workload text learnt logits with
// w = 3 softmax(logits); torch_bench.py still does. Either way the weight update is O(T) = 3 numbers
// of work a step; the cost is in the three per-task backward passes, which are the same.) The raw
// loop computes losses and norms by hand with tensors and uses the library's GradNorm class only
// for that 3-number update, so raw and library do the same arithmetic.

const GN_ALPHA = 1.5;
const GN_LR = 1e-2;

const W5: WorkloadDef = {
  id: "W5",
  title: "GradNorm, trunk 32-256-256, three MSE heads, batch 512",
  forms: ["jointly", "fused", "raw"],
  make(form, opts = {}) {
    const batch = opts.batch ?? 512;
    const x = tf.randomNormal([batch, 32], 0, 1, "float32", 66);
    const ys = [67, 68, 69].map((s) => tf.randomNormal([batch, 1], 0, 1, "float32", s));
    const t1 = denseVars(32, 256, 61);
    const t2 = denseVars(256, 256, 62);
    const heads = [63, 64, 65].map((s) => denseVars(256, 1, s));
    const modelVars = varsOf(t1, t2, ...heads);
    if (form === "jointly" || form === "fused") {
      // The library's way: a Layers model (trunk and three heads) given to JointTrainer, which runs it
      // through its direct forward pass (fused Dense ops with the native addon) and computes the
      // per-task norms with the layers upstream of the shared kernel evaluated once.
      const input = tf.input({ shape: [32] });
      const l1 = tf.layers.dense({ units: 256, activation: "relu", name: fresh("t1") });
      const l2 = tf.layers.dense({ units: 256, activation: "relu", name: fresh("t2") });
      const headLayers = heads.map(() => tf.layers.dense({ units: 1, name: fresh("head") }));
      const h = l2.apply(l1.apply(input)) as tf.SymbolicTensor;
      const model = tf.model({ inputs: input, outputs: headLayers.map((l) => l.apply(h) as tf.SymbolicTensor) });
      setLayer(l1, [t1.k.clone(), t1.b.clone()]);
      setLayer(l2, [t2.k.clone(), t2.b.clone()]);
      headLayers.forEach((l, i) => setLayer(l, [heads[i]!.k.clone(), heads[i]!.b.clone()]));
      disposeAll(modelVars);
      const names = model.outputNames;
      const opt = adamFor(form);
      const trainer = new JointTrainer({
        model,
        tasks: names.map((name) => ({ name, output: name, loss: "mse" as const })),
        optimizer: opt,
        weighting: { name: "gradnorm", options: { alpha: GN_ALPHA, lr: GN_LR } },
        // GradNorm's norms on the trunk's last kernel, as in the raw loop.
        shared: [l2.trainableWeights[0]!.read() as tf.Variable],
      });
      const labels = Object.fromEntries(names.map((n, i) => [n, ys[i] as tf.Tensor]));
      return {
        step: () => [trainer.step(x, labels).total],
        dispose: () => {
          trainer.dispose();
          disposeAll(x, ys, opt, model);
        },
      };
    }
    if (form !== "raw") throw new Error(`W5 has no ${form} form`);
    const optModel: tf.Optimizer = tf.train.adam(LR);
    const gn = new GradNorm({ numTasks: 3, alpha: GN_ALPHA, lr: GN_LR });
    return {
      step: () => {
        const wt = gn.weights();
        let h1: tf.Tensor | undefined;
        let taskLosses: tf.Tensor1D | undefined;
        const { value, grads } = tf.variableGrads(() => {
          const a = applyDense(x, t1, true);
          h1 = tf.keep(a);
          const h2 = applyDense(a, t2, true);
          const ls = tf.stack(heads.map((hd, i) => meanSq(applyDense(h2, hd, false), ys[i] as tf.Tensor))) as tf.Tensor1D;
          taskLosses = tf.keep(ls);
          return tf.sum(tf.mul(ls, tf.tensor1d(wt)));
        }, modelVars);
        // ||d L_i / d W|| for the trunk's last kernel W, at the parameters of this step (before the update).
        const g = tf.tidy(() =>
          tf.stack(
            heads.map((hd, i) => {
              const { value: v, grads: gi } = tf.variableGrads(() => meanSq(applyDense(applyDense(h1 as tf.Tensor, t2, true), hd, false), ys[i] as tf.Tensor), [t2.k]);
              v.dispose();
              return tf.norm(gi[t2.k.name] as tf.Tensor);
            }),
          ),
        );
        optModel.applyGradients(grads);
        const norms = Array.from(g.dataSync());
        const losses = Array.from((taskLosses as tf.Tensor1D).dataSync());
        const total = value.dataSync()[0] as number;
        gn.update({ losses, gradNorms: norms.map((n, i) => (wt[i] as number) * n) });
        tf.dispose([value, g, h1 as tf.Tensor, taskLosses as tf.Tensor]);
        tf.dispose(grads);
        return [total];
      },
      dispose: () => disposeAll(x, ys, modelVars, optModel),
    };
  },
};

// ---------------------------------------------------------------------------------------------
// W6: a fleet of independent MLPs. Model k: seeds 1000+k (layer 1), 2000+k (layer 2), 3000+k (x), 4000+k (y).

export const FLEET = 64;

const W6: WorkloadDef = {
  id: "W6",
  title: `fleet of ${FLEET} MLPs 32-64-1, batch 256 each, own Adam each`,
  forms: ["jointly", "fused", "raw", "ensemble"],
  make(form, opts = {}) {
    const batch = opts.batch ?? 256;
    const [from, to] = opts.members ?? [0, FLEET];
    const ids = Array.from({ length: to - from }, (_, i) => from + i);
    const xs = ids.map((k) => tf.randomNormal([batch, 32], 0, 1, "float32", 3000 + k));
    const ys = ids.map((k) => tf.randomNormal([batch, 1], 0, 1, "float32", 4000 + k));
    if (form === "jointly" || form === "fused") {
      const fleet = xs.map((x, i) => {
        const k = ids[i] as number;
        const input = tf.input({ shape: [32] });
        const l1 = tf.layers.dense({ units: 64, activation: "relu", name: fresh(`m${k}_h`) });
        const l2 = tf.layers.dense({ units: 1, name: fresh(`m${k}_out`) });
        const model = tf.model({ inputs: input, outputs: l2.apply(l1.apply(input)) as tf.SymbolicTensor });
        setLayer(l1, denseInit(32, 64, 1000 + k));
        setLayer(l2, denseInit(64, 1, 2000 + k));
        const opt = adamFor(form);
        const trainer = new JointTrainer({ model, tasks: [{ name: "y", output: model.outputNames[0] as string, loss: "mse" }], optimizer: opt });
        return { model, opt, trainer, x, y: ys[i] as tf.Tensor };
      });
      return {
        step: () => fleet.map((m) => m.trainer.step(m.x, { y: m.y }).total),
        dispose: () => {
          disposeAll(xs, ys);
          for (const m of fleet) {
            m.trainer.dispose();
            disposeAll(m.opt, m.model);
          }
        },
      };
    }
    if (form === "raw") {
      const fleet = xs.map((x, i) => {
        const k = ids[i] as number;
        const d1 = denseVars(32, 64, 1000 + k);
        const d2 = denseVars(64, 1, 2000 + k);
        const y = ys[i] as tf.Tensor;
        return { vars: varsOf(d1, d2), opt: tf.train.adam(LR), loss: () => meanSq(applyDense(applyDense(x, d1, true), d2, false), y) };
      });
      return {
        step: () => fleet.map((m) => rawStep(m.loss, m.vars, m.opt)),
        dispose: () => {
          disposeAll(xs, ys);
          for (const m of fleet) disposeAll(m.vars, m.opt);
        },
      };
    }
    // Vectorised ensemble: weights stacked on a leading model axis, batched matmuls, one Adam. Adam
    // acts element by element and the summed loss gives each model its own gradient, so this is the
    // same computation as 64 independent models with 64 Adams.
    const stacked = tf.tidy(() => {
      const inits = ids.map((k) => [...denseInit(32, 64, 1000 + k), ...denseInit(64, 1, 2000 + k)]);
      return {
        k1: tf.stack(inits.map((p) => p[0] as tf.Tensor)),
        b1: tf.expandDims(tf.stack(inits.map((p) => p[1] as tf.Tensor)), 1),
        k2: tf.stack(inits.map((p) => p[2] as tf.Tensor)),
        b2: tf.expandDims(tf.stack(inits.map((p) => p[3] as tf.Tensor)), 1),
        x: tf.stack(xs),
        y: tf.stack(ys),
      };
    });
    disposeAll(xs, ys);
    const k1 = tf.variable(stacked.k1);
    const b1 = tf.variable(stacked.b1);
    const k2 = tf.variable(stacked.k2);
    const b2 = tf.variable(stacked.b2);
    const { x, y } = stacked;
    tf.dispose([stacked.k1, stacked.b1, stacked.k2, stacked.b2]);
    const vars = [k1, b1, k2, b2];
    const opt: tf.Optimizer = tf.train.adam(LR);
    return {
      step: () => {
        let perModel: tf.Tensor | undefined;
        const { value, grads } = tf.variableGrads(() => {
          const h = tf.relu(tf.add(tf.matMul(x, k1), b1));
          const p = tf.add(tf.matMul(h, k2), b2);
          const l = tf.mean(tf.squaredDifference(p, y), [1, 2]);
          perModel = tf.keep(l);
          return tf.sum(l);
        }, vars);
        opt.applyGradients(grads);
        const losses = Array.from(perModel!.dataSync());
        tf.dispose(grads);
        tf.dispose([value, perModel!]);
        return losses;
      },
      dispose: () => disposeAll(x, y, vars, opt),
    };
  },
};

// ---------------------------------------------------------------------------------------------
// W7 / W8: conv nets. Every form takes its starting values from one seeded, named list (`w7Init`,
// `w8Init`), which `initialState` also hands out as plain arrays, so that bench/torch_bench.py
// (`--check`) can start PyTorch's peer from the same numbers and its first losses can be compared.

/** Glorot-uniform conv kernel [kh, kw, in, out] (fans as Keras counts them: kh·kw·in, kh·kw·out) from a seed. */
function convInit(kh: number, kw: number, cin: number, cout: number, seed: number): tf.Tensor4D {
  const limit = Math.sqrt(6 / (kh * kw * (cin + cout)));
  return tf.randomUniform([kh, kw, cin, cout], -limit, limit, "float32", seed) as tf.Tensor4D;
}

/** Class ids in [0, classes) from a seed (int32 randomUniform truncates, so `classes` itself never appears). */
const classIds = (batch: number, classes: number, seed: number): tf.Tensor1D => tf.randomUniform([batch], 0, classes, "int32", seed) as tf.Tensor1D;

/** Named starting values, in layer order (the names are the ones torch_bench.py's `--check` reads). */
type InitList = Record<string, tf.Tensor>;

/** Variables for a named list, and the helpers a raw loop reads them through. */
function variablesOf(init: InitList): { get(name: string): tf.Variable; all: tf.Variable[] } {
  const vars = new Map(Object.entries(init).map(([name, t]) => [name, tf.variable(t)] as const));
  tf.dispose(Object.values(init));
  return {
    get(name) {
      const v = vars.get(name);
      if (!v) throw new Error(`bench: no starting value named "${name}"; the list has ${[...vars.keys()].join(", ")}`);
      return v;
    },
    all: [...vars.values()],
  };
}

/** Copy the named values `${stem}.kernel` (and `${stem}.bias` if present) into a built layer. */
function setFrom(layer: tf.layers.Layer, init: InitList, stem: string): void {
  const k = init[`${stem}.kernel`];
  if (!k) throw new Error(`bench: no starting value named "${stem}.kernel"`);
  const b = init[`${stem}.bias`];
  layer.setWeights(b ? [k, b] : [k]);
}

// W7: MultiMNIST LeNet, two digit tasks (top-left and bottom-right digit of the canvas). Seeds: conv1
// 71, conv2 72, fc 73, head t hidden 74 + 2t, out 75 + 2t; images 78, labels 79 (left), 80 (right).

const W7_TASKS = ["left", "right"] as const;

function w7Init(): InitList {
  const [fcK, fcB] = denseInit(320, 50, 73);
  const init: InitList = {
    "conv1.kernel": convInit(5, 5, 1, 10, 71),
    "conv1.bias": tf.zeros([10]),
    "conv2.kernel": convInit(5, 5, 10, 20, 72),
    "conv2.bias": tf.zeros([20]),
    "fc.kernel": fcK,
    "fc.bias": fcB,
  };
  W7_TASKS.forEach((_, t) => {
    [init[`head${t}.hidden.kernel`], init[`head${t}.hidden.bias`]] = denseInit(50, 50, 74 + 2 * t);
    [init[`head${t}.out.kernel`], init[`head${t}.out.bias`]] = denseInit(50, 10, 75 + 2 * t);
  });
  return init;
}

function w7Data(batch: number): { x: tf.Tensor4D; labels: tf.Tensor1D[] } {
  return { x: tf.randomUniform([batch, 28, 28, 1], 0, 1, "float32", 78) as tf.Tensor4D, labels: [79, 80].map((s) => classIds(batch, 10, s)) };
}

const W7: WorkloadDef = {
  id: "W7",
  title: "MultiMNIST LeNet (conv 5x5x10, 5x5x20, dense 50), two heads 50-10, batch 256",
  forms: ["jointly", "fused", "raw"],
  make(form, opts = {}) {
    const batch = opts.batch ?? 256;
    const { x, labels } = w7Data(batch);
    const init = w7Init();
    if (form === "jointly" || form === "fused") {
      // As a user writes it: conv -> max pool -> relu twice, flatten, dense, and one small MLP a task.
      const input = tf.input({ shape: [28, 28, 1] });
      const conv1 = tf.layers.conv2d({ filters: 10, kernelSize: 5, padding: "valid", name: fresh("conv1") });
      const conv2 = tf.layers.conv2d({ filters: 20, kernelSize: 5, padding: "valid", name: fresh("conv2") });
      const fc = tf.layers.dense({ units: 50, activation: "relu", name: fresh("fc") });
      const poolRelu = (t: tf.SymbolicTensor): tf.SymbolicTensor =>
        tf.layers.activation({ activation: "relu" }).apply(tf.layers.maxPooling2d({ poolSize: 2 }).apply(t)) as tf.SymbolicTensor;
      const h = poolRelu(conv2.apply(poolRelu(conv1.apply(input) as tf.SymbolicTensor)) as tf.SymbolicTensor);
      const z = fc.apply(tf.layers.flatten().apply(h)) as tf.SymbolicTensor;
      const heads = W7_TASKS.map((task) => [
        tf.layers.dense({ units: 50, activation: "relu", name: fresh(`${task}_hidden`) }),
        tf.layers.dense({ units: 10, name: fresh(`${task}_out`) }),
      ]);
      const outputs = heads.map(([hid, out]) => out!.apply(hid!.apply(z)) as tf.SymbolicTensor);
      const model = tf.model({ inputs: input, outputs });
      setFrom(conv1, init, "conv1");
      setFrom(conv2, init, "conv2");
      setFrom(fc, init, "fc");
      heads.forEach(([hid, out], t) => {
        setFrom(hid!, init, `head${t}.hidden`);
        setFrom(out!, init, `head${t}.out`);
      });
      tf.dispose(Object.values(init));
      const opt = adamFor(form);
      const trainer = new JointTrainer({
        model,
        tasks: W7_TASKS.map((name, t) => ({ name, output: model.outputNames[t] as string, loss: "softmaxCrossEntropy" as const })),
        optimizer: opt,
      });
      const byTask = Object.fromEntries(W7_TASKS.map((name, t) => [name, labels[t] as tf.Tensor]));
      return {
        step: () => [trainer.step(x, byTask).total],
        dispose: () => {
          trainer.dispose();
          disposeAll(x, labels, opt, model);
        },
      };
    }
    if (form !== "raw") throw new Error(`W7 has no ${form} form`);
    const v = variablesOf(init);
    const oneHots = labels.map((l) => tf.oneHot(l, 10));
    const opt = tf.train.adam(LR);
    const conv = (t: tf.Tensor4D, stem: string): tf.Tensor4D =>
      tf.fused.conv2d({ x: t, filter: v.get(`${stem}.kernel`) as tf.Tensor4D, strides: 1, pad: "valid", bias: v.get(`${stem}.bias`) });
    const poolRelu = (t: tf.Tensor4D): tf.Tensor4D => tf.relu(tf.maxPool(t, 2, 2, "valid"));
    const dense2 = (t: tf.Tensor, stem: string, relu: boolean): tf.Tensor2D => applyDense(t, { k: v.get(`${stem}.kernel`), b: v.get(`${stem}.bias`) }, relu);
    const loss = (): tf.Scalar => {
      const h = poolRelu(conv(poolRelu(conv(x, "conv1")), "conv2"));
      const z = dense2(tf.reshape(h, [batch, 320]), "fc", true);
      const perTask = W7_TASKS.map((_, t) => softmaxCE(oneHots[t] as tf.Tensor, dense2(dense2(z, `head${t}.hidden`, true), `head${t}.out`, false)));
      return tf.addN(perTask) as tf.Scalar;
    };
    return {
      step: () => [rawStep(loss, v.all, opt)],
      dispose: () => disposeAll(x, labels, oneHots, v.all, opt),
    };
  },
};

// W8: eight binary attributes (CelebA-like) on a three-block conv net with batch normalisation (in
// training mode: batch statistics, moving averages updated). The convs have no bias: the batch norm
// after each one has its own offset (beta), so a bias would be removed again by the normalisation.
// Seeds: conv k 80 + k (k = 1..3), head t 90 + t; images 98, attribute t labels 100 + t.

const W8_ATTRIBUTES = 8;
const W8_CHANNELS = [3, 32, 64, 128] as const;
/** tfjs-layers' batch-norm defaults (PyTorch's peer is set to the same: eps 1e-3, momentum 0.01). */
const BN_EPSILON = 1e-3;
const BN_MOMENTUM = 0.99;

function w8Init(): InitList {
  const init: InitList = {};
  for (let k = 1; k <= 3; k++) init[`conv${k}.kernel`] = convInit(3, 3, W8_CHANNELS[k - 1], W8_CHANNELS[k], 80 + k);
  for (let t = 0; t < W8_ATTRIBUTES; t++) [init[`head${t}.kernel`], init[`head${t}.bias`]] = denseInit(128, 1, 90 + t);
  return init;
}

function w8Data(batch: number): { x: tf.Tensor4D; labels: tf.Tensor2D[] } {
  const x = tf.randomUniform([batch, 64, 64, 3], 0, 1, "float32", 98) as tf.Tensor4D;
  const labels = Array.from({ length: W8_ATTRIBUTES }, (_, t) => tf.tidy(() => tf.cast(tf.reshape(classIds(batch, 2, 100 + t), [batch, 1]), "float32")) as tf.Tensor2D);
  return { x, labels };
}

const W8: WorkloadDef = {
  id: "W8",
  title: "eight attributes, conv 3x3 32-64-128 with batch norm, global average pool, batch 64",
  forms: ["jointly", "fused", "raw"],
  make(form, opts = {}) {
    const batch = opts.batch ?? 64;
    const { x, labels } = w8Data(batch);
    const init = w8Init();
    const tasks = Array.from({ length: W8_ATTRIBUTES }, (_, t) => `attr${t}`);
    if (form === "jointly" || form === "fused") {
      const input = tf.input({ shape: [64, 64, 3] });
      const convs = [1, 2, 3].map((k) =>
        tf.layers.conv2d({ filters: W8_CHANNELS[k] as number, kernelSize: 3, padding: "same", useBias: false, name: fresh(`conv${k}`) }),
      );
      let h: tf.SymbolicTensor = input;
      convs.forEach((conv, i) => {
        const bn = tf.layers.batchNormalization({ epsilon: BN_EPSILON, momentum: BN_MOMENTUM, name: fresh(`bn${i + 1}`) });
        h = tf.layers.activation({ activation: "relu" }).apply(bn.apply(conv.apply(h))) as tf.SymbolicTensor;
        if (i < 2) h = tf.layers.maxPooling2d({ poolSize: 2 }).apply(h) as tf.SymbolicTensor;
      });
      const pooled = tf.layers.globalAveragePooling2d({}).apply(h) as tf.SymbolicTensor;
      const heads = tasks.map((task) => tf.layers.dense({ units: 1, name: fresh(task) }));
      const model = tf.model({ inputs: input, outputs: heads.map((l) => l.apply(pooled) as tf.SymbolicTensor) });
      convs.forEach((conv, i) => setFrom(conv, init, `conv${i + 1}`));
      heads.forEach((l, t) => setFrom(l, init, `head${t}`));
      tf.dispose(Object.values(init));
      const opt = adamFor(form);
      const trainer = new JointTrainer({
        model,
        tasks: tasks.map((name, t) => ({ name, output: model.outputNames[t] as string, loss: "binaryCrossEntropy" as const })),
        optimizer: opt,
      });
      const byTask = Object.fromEntries(tasks.map((name, t) => [name, labels[t] as tf.Tensor]));
      return {
        step: () => [trainer.step(x, byTask).total],
        dispose: () => {
          trainer.dispose();
          disposeAll(x, labels, opt, model);
        },
      };
    }
    if (form !== "raw") throw new Error(`W8 has no ${form} form`);
    const v = variablesOf(init);
    // Batch-norm scale and offset are trained; the moving statistics are not (as in tfjs-layers).
    const own = (t: tf.Tensor, trainable = true): tf.Variable => {
      const out = tf.variable(t, trainable);
      t.dispose();
      return out;
    };
    const bn = [1, 2, 3].map((k) => {
      const c = W8_CHANNELS[k] as number;
      return { gamma: own(tf.ones([c])), beta: own(tf.zeros([c])), mean: own(tf.zeros([c]), false), variance: own(tf.ones([c]), false) };
    });
    const trained = [...v.all, ...bn.flatMap((b) => [b.gamma, b.beta])];
    const opt = tf.train.adam(LR);
    const normalise = (t: tf.Tensor4D, b: (typeof bn)[number]): tf.Tensor4D => {
      const { mean, variance } = tf.moments(t, [0, 1, 2]);
      // The moving averages a user's loop keeps for inference, updated as tfjs-layers does.
      tf.tidy(() => {
        b.mean.assign(tf.sub(b.mean, tf.mul(tf.sub(b.mean, mean), 1 - BN_MOMENTUM)));
        b.variance.assign(tf.sub(b.variance, tf.mul(tf.sub(b.variance, variance), 1 - BN_MOMENTUM)));
      });
      return tf.batchNorm4d(t, mean as tf.Tensor1D, variance as tf.Tensor1D, b.beta as tf.Tensor1D, b.gamma as tf.Tensor1D, BN_EPSILON);
    };
    const loss = (): tf.Scalar => {
      let h: tf.Tensor4D = x;
      for (let i = 0; i < 3; i++) {
        h = tf.relu(normalise(tf.conv2d(h, v.get(`conv${i + 1}.kernel`) as tf.Tensor4D, 1, "same"), bn[i]!));
        if (i < 2) h = tf.maxPool(h, 2, 2, "valid");
      }
      const pooled = tf.mean(h, [1, 2]);
      const perTask = tasks.map((_, t) => sigmoidCE(labels[t] as tf.Tensor, applyDense(pooled, { k: v.get(`head${t}.kernel`), b: v.get(`head${t}.bias`) }, false)));
      return tf.addN(perTask) as tf.Scalar;
    };
    return {
      step: () => [rawStep(loss, trained, opt)],
      dispose: () => disposeAll(x, labels, trained, bn.flatMap((b) => [b.mean, b.variance]), opt),
    };
  },
};

/** A tensor as plain numbers with its shape. */
export interface PlainTensor {
  shape: number[];
  values: number[];
}

/**
 * The starting state of W7 or W8 at a batch size, as plain arrays: the named parameters every form
 * starts from (channels last: conv kernels [kh, kw, in, out], dense kernels [in, out]), the images
 * (NHWC) and each task's labels (class ids for W7, 0/1 for W8). bench/torch_bench.py `--check`
 * reads this to start PyTorch's peer from the same numbers.
 */
export function initialState(id: ConvWorkloadId, batch: number): { id: ConvWorkloadId; batch: number; params: Record<string, PlainTensor>; x: PlainTensor; labels: number[][] } {
  const plain = (t: tf.Tensor): PlainTensor => ({ shape: t.shape, values: Array.from(t.dataSync()) });
  const init = id === "W7" ? w7Init() : w8Init();
  const data = id === "W7" ? w7Data(batch) : w8Data(batch);
  const params = Object.fromEntries(Object.entries(init).map(([name, t]) => [name, plain(t)]));
  const out = { id, batch, params, x: plain(data.x), labels: data.labels.map((l) => Array.from(l.dataSync())) };
  tf.dispose([...Object.values(init), data.x, ...data.labels]);
  return out;
}

export const WORKLOADS: Record<WorkloadId, WorkloadDef> = {
  W1: twoHead("W1", 64, 256),
  W2: twoHead("W2", 512, 1024),
  W3,
  W4,
  W5,
  W6,
  W7,
  W8,
};
