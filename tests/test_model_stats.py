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


def test_tea_r50_rows_count_res2net_flops_per_frame():
  """TEA-R50 is a per-frame Res2Net-50 26w_4s (4.2 GMAC at 224 in the
  Res2Net paper) plus ME and MTA; ART-R50 adds the heads on 49 tokens of
  every frame. Counted like the UniFormerV2 rows (unrolled, MAC = 1)."""
  rows = model_stats.stats("r50", 4, 10, 2, "preset")
  tea, full = rows
  assert (tea["model"], full["model"]) == ("TEA R50", "ART R50")
  assert (tea["paper GFLOPs"], full["paper GFLOPs"]) == ("70", "72")
  per_frame = float(tea["GFLOPs/view"]) / 4
  assert 4.0 <= per_frame <= 4.8, per_frame
  assert float(full["GFLOPs/view"]) > float(tea["GFLOPs/view"])
  # 23.65 M Res2Net-50 without its fc, ME, MTA and a 10-class fc (24.12 M
  # in test_tea), printed with two decimals.
  assert tea["params (M)"] == "24.12"
