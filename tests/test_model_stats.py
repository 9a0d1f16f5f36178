"""model_stats: parameter counts and XLA FLOPs of the unrolled model."""

from art_jax.tools import model_stats


def test_flops_grow_with_frames_and_count_every_layer():
  # 10 classes: the top-k text selection (k = 8) picks classes.
  # Unrolled (scan=False): XLA's cost analysis would count a scanned body
  # once. ViT-B/16 per frame is ~17.5 GMAC of attention blocks; with Local
  # MHRA, patch embedding and the global blocks one T' step is ~22 GMAC.
  two = model_stats.stats("b16", 2, 10, 2, "preset")
  four = model_stats.stats("b16", 4, 10, 2, "preset")
  g2 = float(two[0]["GFLOPs/view"])
  g4 = float(four[0]["GFLOPs/view"])
  assert 18 <= g2 <= 26, g2
  assert 1.9 <= g4 / g2 <= 2.1
  art_params = float(two[1]["params (M)"])
  backbone_params = float(two[0]["params (M)"])
  assert art_params > backbone_params
  assert two[0]["model"] == "UniFormerV2 B16"
