// Properties of every weighting over seeded random runs (T in 2..5, losses and norms spanning 1e-2..1e2).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWeighting, RLW, seededRandom, weightingNames, weightingRequirements, type Weighting, type WeightingInput } from "../src/weighting/index.js";

interface Run {
  T: number;
  inputs: WeightingInput[];
}

/** Random runs of 40 steps: log-uniform losses that drift down with noise, log-uniform norms. */
function randomRuns(seed: number, count = 12): Run[] {
  const rand = seededRandom(seed);
  const logUniform = () => 10 ** (4 * rand() - 2);
  return Array.from({ length: count }, () => {
    const T = 2 + Math.floor(rand() * 4);
    const start = Array.from({ length: T }, logUniform);
    const inputs = Array.from({ length: 40 }, (_, k) => ({
      losses: start.map((l) => l * 0.97 ** k * (0.8 + 0.4 * rand())),
      gradNorms: start.map(() => logUniform()),
    }));
    return { T, inputs };
  });
}

const runs = randomRuns(7);

function make(name: string, T: number, extra: Record<string, unknown> = {}): Weighting {
  return name === "static" ? createWeighting(name, { weights: Array.from({ length: T }, (_, i) => 0.5 + i) }) : createWeighting(name, { numTasks: T, ...extra });
}

/** Feeds a run; returns the weights asked for before each update. */
function play(w: Weighting, run: Run, extraCalls = false): number[][] {
  return run.inputs.map((input, k) => {
    if (extraCalls) w.weights({ losses: run.inputs[(k * 7) % run.inputs.length].losses, step: 3 }); // must not change anything
    const out = w.weights(input);
    w.update(input);
    return out;
  });
}

test("random runs cover T = 2..5", () => {
  assert.deepEqual([...new Set(runs.map((r) => r.T))].sort(), [2, 3, 4, 5]);
});

test("every method: weights finite and positive, summing to T or 1 where documented", () => {
  for (const name of weightingNames) {
    const sumRule = weightingRequirements[name].sum;
    for (const [n, run] of runs.entries()) {
      const seen = play(make(name, run.T), run);
      for (const [k, w] of seen.entries()) {
        assert.equal(w.length, run.T, `${name} run ${n} step ${k}`);
        assert.ok(w.every((x) => Number.isFinite(x) && x > 0), `${name} run ${n} step ${k}: ${w}`);
        const s = w.reduce((a, b) => a + b, 0);
        if (sumRule === "T") assert.ok(Math.abs(s - run.T) < 1e-9 * run.T, `${name} sum ${s}`);
        if (sumRule === "1") assert.ok(Math.abs(s - 1) < 1e-9, `${name} sum ${s}`);
      }
      // Learned methods must actually move off their starting weights on these runs.
      if (["gradnorm", "uncertainty", "imtl-l", "famo", "db-mtl", "dwa"].includes(name)) {
        assert.notDeepEqual(seen.at(-1), seen[0], `${name} run ${n} never changed its weights`);
      }
    }
  }
});

test("deterministic methods: weights() is pure, so extra calls and interleaving change nothing", () => {
  for (const name of weightingNames.filter((m) => m !== "rlw")) {
    const plain = runs.map((run) => play(make(name, run.T), run));
    // Interleave all runs step by step, with extra weights() calls, on separate instances.
    const instances = runs.map((run) => make(name, run.T));
    const interleaved: number[][][] = runs.map(() => []);
    for (let k = 0; k < 40; k++) {
      for (const i of [...runs.keys()].reverse()) {
        const input = runs[i].inputs[k];
        instances[i].weights({ losses: runs[i].inputs[39 - k].losses, step: 5 });
        interleaved[i].push(instances[i].weights(input));
        instances[i].update(input);
      }
    }
    assert.deepEqual(interleaved, plain, name);
  }
});

test("deterministic methods are equivariant under a permutation of the tasks", () => {
  for (const name of weightingNames.filter((m) => m !== "rlw" && m !== "static")) {
    for (const run of runs.slice(0, 6)) {
      const perm = [...Array(run.T).keys()].reverse();
      const permuted: Run = { T: run.T, inputs: run.inputs.map((x) => ({ losses: perm.map((p) => x.losses![p]), gradNorms: perm.map((p) => x.gradNorms![p]) })) };
      const a = play(make(name, run.T), run);
      const b = play(make(name, run.T), permuted);
      a.forEach((w, k) => w.forEach((x, i) => {
        const y = b[k][perm.indexOf(i)];
        assert.ok(Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(x)), `${name} step ${k} task ${i}: ${x} vs ${y}`);
      }));
    }
  }
});

test("RLW is reproducible by seed, depends on it, and step k's weights ignore call order", () => {
  const seq = (seed: number) => {
    const r = new RLW({ numTasks: 4, seed });
    return Array.from({ length: 30 }, () => (r.update(), r.weights()));
  };
  assert.deepEqual(seq(11), seq(11));
  assert.notDeepEqual(seq(11), seq(12));
  const r = new RLW({ numTasks: 4, seed: 11 });
  const backwards = Array.from({ length: 30 }, (_, k) => r.weights({ step: 30 - k })).reverse();
  assert.deepEqual(backwards, seq(11));
  // Different steps give different draws.
  assert.equal(new Set(seq(11).map((w) => w.join())).size, 30);
});

test("the requirements table covers every method with valid needs", () => {
  assert.deepEqual(Object.keys(weightingRequirements).sort(), [...weightingNames].sort());
  assert.deepEqual(weightingRequirements.gradnorm.needs, ["losses", "lossHistory", "gradNorms"]);
  assert.deepEqual(weightingRequirements.dwa, { needs: ["lossHistory"], cadence: "epoch", objective: "losses", sum: "T" });
  assert.equal(weightingRequirements["db-mtl"].objective, "log-losses");
});
