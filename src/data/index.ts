export { Rng } from "./random.js";
export { DATA_DIR, readDataJSON } from "./files.js";
export { loadPenguins, PENGUIN_FEATURES } from "./penguins.js";
export { trainTestSplit, takeRows, fitStandardizer, toMatrix, toClassIds, type Split, type SplitOptions, type Standardizer } from "./prepare.js";
export { loadCars, CAR_FEATURES, type CarRow } from "./cars.js";
export { syntheticRecs, scoreCorrelation, type SyntheticRecs, type SyntheticRecsOptions, type SyntheticRecsTensors, type PlantedFactors } from "./synthetic-recs.js";
