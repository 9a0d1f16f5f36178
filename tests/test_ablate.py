"""ablate: Table IV settings map to the right model and loss switches."""

import pytest
from test_config import load_config

from art_jax import train
from art_jax.tools import ablate


@pytest.mark.parametrize(
  "setting,heads,loss",
  [
    (
      "baseline",
      {"use_rssa": False},
      {"use_final": False, "use_mtc": False, "use_ft": False},
    ),
    (
      "rssa",
      {"use_rssa": True, "use_se": True, "use_ta": False},
      {"use_final": True, "use_mtc": False, "use_ft": False},
    ),
    (
      "rssa_no_se",
      {"use_se": False, "use_ta": False},
      {"use_mtc": False, "use_ft": False},
    ),
    (
      "rssa_ta",
      {"use_se": True, "use_ta": True},
      {"use_mtc": False, "use_ft": False},
    ),
    (
      "art",
      {"use_rssa": True, "use_se": True, "use_ta": True},
      {
        "use_final": True,
        "use_mtc": True,
        "use_ft": True,
        "use_vc": True,
        "use_pc": True,
      },
    ),
  ],
)
def test_setting_switches(setting, heads, loss):
  c = ablate.setting_config(load_config("demo"), setting, seed=2)
  assert c.seed == 2
  for k, v in heads.items():
    assert c.model.heads[k] == v, k
  for k, v in loss.items():
    assert c.loss[k] == v, k
  # The trainer accepts the setting as it is.
  options = train.loss_options(c)
  assert options.use_mtc == loss["use_mtc"]


def test_unknown_setting_and_summary_table():
  with pytest.raises(ValueError, match="unknown setting"):
    ablate.setting_config(load_config("demo"), "rssa_plus", 0)
  table = ablate.summarise(
    {
      "art": [
        {"top1": 0.9, "mean_class_accuracy": 0.8},
        {"top1": 0.8, "mean_class_accuracy": 0.6},
      ]
    }
  )
  assert (
    "| (5) ART (+ MTC + text fine-tuning) | 2 | 85.0 ± 5.0 | 70.0 ± 10.0 |"
    in table
  )
