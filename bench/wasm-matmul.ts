/**
 * Training-step timing on the wasm backend, stock matmul kernels vs jointly's
 * (src/backend/kernels/BatchMatMul.ts and _FusedMatMul.ts, whose products run through the native
 * addon's BLAS when it is built; JOINTLY_NATIVE=0 times the pure-wasm XNNPACK path instead).
 * Model: input 32 -> Dense(W, relu) -> Dense(W, relu) -> heads Dense(2) (softmax CE) and Dense(1) (MSE),
 * loss 0.7 CE + 0.3 MSE, Adam 1e-3. Run: node --import tsx bench/wasm-matmul.ts [reps]
 */
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { registerWasmKernels } from "../src/backend/kernels/register-all.js";

interface Setup {
  width: number;
  batch: number;
}

function buildModel(width: number): tf.LayersModel {
  const input = tf.input({ shape: [32] });
  const h1 = tf.layers.dense({ units: width, activation: "relu", kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }).apply(input) as tf.SymbolicTensor;
  const h2 = tf.layers.dense({ units: width, activation: "relu", kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(h1) as tf.SymbolicTensor;
  const cls = tf.layers.dense({ units: 2, kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }).apply(h2) as tf.SymbolicTensor;
  const reg = tf.layers.dense({ units: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }).apply(h2) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: [cls, reg] });
}

function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Median ms per training step, stock vs override. The two alternate step by step so that load from
 * other processes on this shared machine hits both alike.
 */
function timeSteps(model: tf.LayersModel, opt: tf.Optimizer, x: tf.Tensor, yCls: tf.Tensor, yReg: tf.Tensor, warmup: number, reps: number): { stock: number; fast: number; tensorDelta: number } {
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const step = (): void => {
    const loss = opt.minimize(
      () => {
        const [logits, pred] = model.apply(x, { training: true }) as tf.Tensor[];
        const ce = tf.losses.softmaxCrossEntropy(yCls, logits);
        const mse = tf.losses.meanSquaredError(yReg, pred);
        return tf.add(tf.mul(0.7, ce), tf.mul(0.3, mse)) as tf.Scalar;
      },
      true,
      vars,
    );
    // Reading the loss forces the step to finish before the clock stops.
    loss?.dataSync();
    loss?.dispose();
  };
  const timed = (fast: boolean): number => {
    const handle = fast ? registerWasmKernels({ only: ["BatchMatMul", "_FusedMatMul"] }) : null;
    const t0 = performance.now();
    step();
    const ms = performance.now() - t0;
    handle?.restore();
    return ms;
  };
  for (let i = 0; i < warmup; i++) {
    timed(false);
    timed(true);
  }
  const before = tf.memory().numTensors;
  const stock: number[] = [];
  const fast: number[] = [];
  for (let i = 0; i < reps; i++) {
    stock.push(timed(false));
    fast.push(timed(true));
  }
  return { stock: median(stock), fast: median(fast), tensorDelta: tf.memory().numTensors - before };
}

async function main(): Promise<void> {
  await tf.setBackend("wasm");
  await tf.ready();
  const reps = Number(process.argv[2] ?? 7);
  const setups: Setup[] = [
    { width: 512, batch: 1024 },
    { width: 64, batch: 256 },
  ];
  console.log(`backend ${tf.getBackend()}, tfjs ${tf.version.tfjs}, median of ${reps} steps each (alternating) after 2 warm-up steps each`);
  for (const { width, batch } of setups) {
    const model = buildModel(width);
    const x = tf.randomNormal([batch, 32], 0, 1, "float32", 7);
    const yCls = tf.oneHot(tf.randomUniform([batch], 0, 2, "int32", 8), 2);
    const yReg = tf.randomNormal([batch, 1], 0, 1, "float32", 9);
    const opt = tf.train.adam(1e-3);
    const { stock, fast, tensorDelta } = timeSteps(model, opt, x, yCls, yReg, 2, reps);
    console.log(
      `width ${width} batch ${batch}: stock ${stock.toFixed(1)} ms/step, fast ${fast.toFixed(1)} ms/step, ` +
        `speed-up ${(stock / fast).toFixed(1)}x (tensor count change ${tensorDelta})`,
    );
    tf.dispose([x, yCls, yReg]);
    opt.dispose();
    model.dispose();
  }
}

await main();
