export { sharedEmbedding, sharedVariablesReport, type SharedEmbeddingOptions, type SharedVariableRow } from "./sharing.js";
export { TableEmbedding, type TableEmbeddingArgs, type EmbeddingInitializer } from "./embedding.js";
