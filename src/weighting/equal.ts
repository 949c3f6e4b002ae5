/**
 * Equal weighting: w_i = 1 for every task, so the total is the plain sum Σ L_i (weights sum to T).
 * The baseline every dynamic weighting is compared with.
 */
import { checkTaskCount, requireLosses, type Weighting, type WeightingInput } from "./common.js";

export interface EqualOptions {
  numTasks: number;
}

export class EqualWeighting implements Weighting {
  readonly name = "equal";
  readonly numTasks: number;
  constructor({ numTasks }: EqualOptions) {
    this.numTasks = checkTaskCount("Equal", numTasks);
  }

  weights(): number[] {
    return new Array<number>(this.numTasks).fill(1);
  }

  /** Nothing to learn; losses, if given, are still checked so a wrong T is caught early. */
  update(input?: WeightingInput): void {
    if (input?.losses !== undefined) requireLosses("Equal", input, this.numTasks, "any");
  }
}
