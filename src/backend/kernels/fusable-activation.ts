/**
 * The wasm backend's fused-activation codes (`FusableActivation` in tfjs-backend-wasm's
 * kernels/types.ts and cc/fusable_activations.h), which the native addon's epilogues use too.
 */
export const FUSABLE_ACTIVATION = {
  linear: 0,
  relu: 1,
  relu6: 2,
  prelu: 3,
  leakyrelu: 4,
  sigmoid: 5,
  elu: 6,
} as const;

export type FusableActivationName = keyof typeof FUSABLE_ACTIVATION;

/** The code of an activation name (undefined for one the wasm backend cannot fuse). */
export function fusableActivation(name: string | undefined): number | undefined {
  const key = (name ?? "linear") as FusableActivationName;
  return Object.hasOwn(FUSABLE_ACTIVATION, key) ? FUSABLE_ACTIVATION[key] : undefined;
}

/**
 * True for the activations XNNPACK's epilogue (and the stock wasm kernels' slow loops) computes as a
 * clamp, which turns NaN into 0 (`max(NaN, 0)` is 0 there): relu and relu6. Callers without the addon
 * run the product linear and then {@link applyActivation}, which keeps NaN as tfjs's cpu backend does.
 */
export function clampDropsNaN(activation: number): boolean {
  return activation === FUSABLE_ACTIVATION.relu || activation === FUSABLE_ACTIVATION.relu6;
}

/**
 * Applies a fused activation in place, as the wasm backend's epilogue does: prelu multiplies a
 * negative value at flat index i by weights[i mod weights.length] (the weights tiled over the output).
 * NaN stays NaN and -0 becomes 0 for relu and relu6, as tfjs's cpu backend's Math.max(0, x).
 */
export function applyActivation(values: Float32Array, activation: number, leakyreluAlpha: number, preluWeights?: Float32Array): void {
  const n = values.length;
  switch (activation) {
    case FUSABLE_ACTIVATION.linear:
      return;
    case FUSABLE_ACTIVATION.relu:
      // `v <= 0` is false for NaN, so a NaN is left as it is; -0 becomes 0 as in Math.max(0, -0).
      for (let i = 0; i < n; i++) if (values[i]! <= 0) values[i] = 0;
      return;
    case FUSABLE_ACTIVATION.relu6:
      for (let i = 0; i < n; i++) values[i] = Math.min(6, Math.max(0, values[i]!));
      return;
    case FUSABLE_ACTIVATION.leakyrelu:
      for (let i = 0; i < n; i++) if (values[i]! < 0) values[i] = leakyreluAlpha * values[i]!;
      return;
    case FUSABLE_ACTIVATION.sigmoid:
      for (let i = 0; i < n; i++) values[i] = 1 / (1 + Math.exp(-values[i]!));
      return;
    case FUSABLE_ACTIVATION.elu:
      for (let i = 0; i < n; i++) if (values[i]! < 0) values[i] = Math.expm1(values[i]!);
      return;
    case FUSABLE_ACTIVATION.prelu: {
      if (preluWeights === undefined || preluWeights.length === 0) throw new Error("prelu activation needs preluActivationWeights");
      const m = preluWeights.length;
      for (let i = 0; i < n; i++) if (values[i]! < 0) values[i] = preluWeights[i % m]! * values[i]!;
      return;
    }
    default:
      throw new Error(`unknown fused activation code ${activation}`);
  }
}
