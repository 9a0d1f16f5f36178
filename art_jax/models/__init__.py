"""Flax modules: the UniFormerV2 backbone, the CLIP text tower, ART heads."""
