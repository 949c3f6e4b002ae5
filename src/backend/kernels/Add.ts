/**
 * `Add` for wasm (an override): float32 Add with broadcasting (a per-channel vector or a scalar
 * against an activation) as one native loop over collapsed axes, exactly the stock kernel's results;
 * see ./broadcast-binary.ts. Equal shapes, other dtypes and runs without the addon stay with the
 * stock kernel.
 */
import { broadcastBinaryKernel } from "./broadcast-binary.js";

export const addKernel = broadcastBinaryKernel("Add");
