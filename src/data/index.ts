export { Rng } from "./random.js";
export { DATA_DIR, readDataJSON } from "./files.js";
export { loadPenguins, PENGUIN_FEATURES } from "./penguins.js";
export { trainTestSplit, takeRows, fitStandardizer, toMatrix, toClassIds, type Split, type SplitOptions, type Standardizer } from "./prepare.js";
export { loadCars, CAR_FEATURES, type CarRow } from "./cars.js";
export { syntheticRecs, scoreCorrelation, type SyntheticRecs, type SyntheticRecsOptions, type SyntheticRecsTensors, type PlantedFactors } from "./synthetic-recs.js";
export { parseIdx, readIdx, type IdxArray, type IdxDtype, type IdxReadOptions } from "./idx.js";
export { loadMnist, loadFashionMnist, loadIdxImageSet, imageSetTensors, mnistDir, FASHION_MNIST_DIR, MNIST_CLASSES, FASHION_MNIST_CLASSES, type ImageSet, type ImageSetOptions, type ImageSetDtype, type MnistSplit } from "./mnist.js";
export { loadMultiMnist, buildMultiMnist, multiMnistSources, composeMultiImage, multiMnistTensors, MULTI_MNIST_SOURCES, MULTI_MNIST_CANVAS, MULTI_MNIST_MAX_SHIFT, MULTI_MNIST_CACHE_DIR, type MultiMnist, type MultiMnistOptions, type MultiMnistSources, type MultiMnistVariant } from "./multi-mnist.js";
