"""Annotation readers, one module per dataset, in each one's published layout.

Each module offers `VARIANTS` (variant -> splits it prepares),
`DEFAULT_VARIANT`, `FLIP_SAFE` and
`read(annotations, videos, split, variant) -> common.Annotations`;
`synthetic` renders its clips (`process_clip`) instead of decoding videos.
"""
