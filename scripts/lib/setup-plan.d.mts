/** Types for setup-plan.mjs (plain JavaScript so that the set-up runs before any install). */
export declare const APT: Record<"native" | "jupyter" | "redis" | "fashion-mnist" | "chromium" | "pytorch", string[]>;
export interface SetupPurpose {
  forTests: boolean;
  forBench: boolean;
  depsOnly: boolean;
  json: boolean;
}
export declare function setupPurpose(argv: string[], env: Record<string, string | undefined>): SetupPurpose;
export declare function setupSteps(purpose: { forTests: boolean; forBench: boolean; depsOnly?: boolean }): { step: string; apt: string[] }[];
export declare function lockMismatches(pkg: unknown, lock: unknown): string[];
export declare function installedDiffers(lock: unknown, installed: unknown): string[];
export declare function dependencyPlan(state: { lock: unknown; pkg: unknown; installed: unknown; toolsPresent: boolean }): { action: "ok" | "ci" | "install"; reason: string };
export declare function ciFailedOnSync(output: string): boolean;
