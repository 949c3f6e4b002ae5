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
