import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

/** The `data/` folder shipped with jointly (next to `dist/` and `src/`). */
export const DATA_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "data");

/** Read a JSON array of records from `data/`. */
export function readDataJSON(file: string): Record<string, unknown>[] {
  const path = join(DATA_DIR, file);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`Could not read the data set ${path}: ${(err as Error).message}`);
  }
  if (!Array.isArray(parsed)) throw new Error(`The data set ${path} must hold a JSON array of records.`);
  return parsed as Record<string, unknown>[];
}
