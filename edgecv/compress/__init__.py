"""Compression: magnitude and channel pruning, QAT, clustering, post-training quantization, export."""
