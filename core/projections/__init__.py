"""Whole layers as point clouds: features, UMAP/PCA/t-SNE fits, probes, CKA, the report card."""
