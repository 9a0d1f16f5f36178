"""The embedded demo (configs/demo.py): what it builds on first use.

Real runs start from prepared shards, a CLIP text bank and converted
weights; the demo downloads nothing, so it makes stand-ins here: the
synthetic dataset's shards (`inputs`, rendered by `art_jax.data.synthetic`),
a pose-pretrained backbone (`pose_pretrain`), a tiny CLIP for its text bank
(`tiny_clip`, `clip_pretrain`, trained on `motion_captions`), and its
config knobs (`config`). The trainer imports nothing from here;
`art_jax.main` builds the inputs before it trains.
"""
