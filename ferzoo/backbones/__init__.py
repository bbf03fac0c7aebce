"""Backbones shared by several plugins (PyTorch-compatible padding and batch-norm settings)."""
