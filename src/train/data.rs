//! Chunked, shuffled, prefetched training batches from a feature store and alignments.
