export { Rng } from "./random.js";
export { DATA_DIR, readDataJSON } from "./files.js";
export { loadPenguins, PENGUIN_FEATURES } from "./penguins.js";
export { trainTestSplit, takeRows, fitStandardizer, toMatrix, toClassIds, type Split, type SplitOptions, type Standardizer } from "./prepare.js";
