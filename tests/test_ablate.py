"""The ablation table (art_jax/ablations.py) and its runner (tools/ablate)."""

import json

import pytest
from test_config import load_config

from art_jax import ablations, config_lib, train
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
    # Table IV (5) is RSSA + TA + MTC *without* text fine-tuning.
    (
      "rssa_ta_mtc",
      {"use_rssa": True, "use_se": True, "use_ta": True},
      {"use_mtc": True, "use_spa": True, "use_tem": True, "use_trk": True,
       "use_ft": False},
    ),
    (
      "mtc_tem",
      {"use_ta": True},
      {"use_mtc": True, "use_spa": False, "use_tem": True, "use_trk": False,
       "use_ft": False},
    ),
    (
      "mtc_spa_trk",
      {"use_ta": True},
      {"use_mtc": True, "use_spa": True, "use_tem": False, "use_trk": True,
       "use_ft": False},
    ),
    (
      "ft_vc",
      {"use_ta": True},
      {"use_mtc": True, "use_ft": True, "use_vc": True, "use_pc": False},
    ),
    (
      "art",
      {"use_rssa": True, "use_se": True, "use_ta": True},
      {"use_final": True, "use_mtc": True, "use_ft": True, "use_vc": True,
       "use_pc": True},
    ),
  ],
)  # fmt: skip
def test_setting_switches(setting, heads, loss):
  base = load_config("demo")
  # Settings overwrite every switch, whatever the base config says.
  base.unlock()
  base.loss.use_ft = not loss["use_ft"]
  base.model.heads.use_se = not heads.get("use_se", True)
  c = ablations.apply(base, setting, seed=2)
  assert c.seed == 2
  for k, v in heads.items():
    assert c.model.heads[k] == v, k
  for k, v in loss.items():
    assert c.loss[k] == v, k
  assert not c.loss.use_align  # default selection: the global head
  # The config is consistent and the trainer takes it as it is.
  assert config_lib.heads_and_loss_problems(c) == []
  assert train.loss_options(c).use_mtc == loss["use_mtc"]


def test_tables_list_the_papers_rows():
  assert [s for s, _ in ablations.table_rows("IV")] == [
    "baseline", "rssa", "rssa_no_se", "rssa_ta", "rssa_ta_mtc",
  ]  # fmt: skip
  assert [s for s, _ in ablations.table_rows("V")] == [
    "rssa_ta", "mtc_spa", "mtc_tem", "mtc_trk", "mtc_spa_trk", "rssa_ta_mtc",
  ]  # fmt: skip
  assert [s for s, _ in ablations.table_rows("VI")] == [
    "rssa_ta_mtc", "ft_vc", "ft_pc", "art",
  ]  # fmt: skip
  distinct = {s for t in ablations.TABLES for s, _ in ablations.table_rows(t)}
  assert distinct | {"art"} == set(ablations.SETTINGS) and len(distinct) == 12
  labels = [label for _, label in ablations.table_rows("IV")]
  assert labels[0].startswith("(1) ") and labels[4].startswith("(5) ")
  with pytest.raises(ValueError, match="unknown table"):
    ablations.table_rows("VII")


def test_video_text_selection_gets_the_alignment_loss_without_ft():
  base = load_config("demo")
  base.unlock()
  base.model.heads.text_selection = "video_text"
  for setting, align in (
    ("baseline", False),
    ("rssa", True),
    ("rssa_ta_mtc", True),
    ("ft_vc", False),
    ("ft_pc", False),
    ("art", False),
  ):
    c = ablations.apply(base, setting, 0)
    assert c.loss.use_align == align, setting
    assert config_lib.heads_and_loss_problems(c) == []
  c = ablations.apply(base, "rssa", 0)
  c.loss.use_align = False
  (problem,) = config_lib.heads_and_loss_problems(c)
  assert "untrained" in problem and "use_align" in problem


def test_unknown_setting_and_subsets():
  with pytest.raises(ValueError, match="unknown setting"):
    ablations.apply(load_config("demo"), "rssa_plus", 0)
  rows = ablate.select_rows("V", ["mtc_trk", "rssa_ta"])
  assert rows == [
    ("rssa_ta", "(1) no MTC term (= IV (4))"),
    ("mtc_trk", "(4) L_trk"),
  ]
  with pytest.raises(ValueError, match="not rows of Table IV"):
    ablate.select_rows("IV", ["ft_vc"])


def test_summary_table_format():
  rows = ablations.table_rows("IV")
  table = ablate.summarise(
    rows,
    {
      "rssa_ta_mtc": [
        {"top1": 0.9, "mean_class_accuracy": 0.8},
        {"top1": 0.8, "mean_class_accuracy": 0.6},
      ]
    },
  )
  assert table.splitlines()[0] == "| setting | seeds | Top-1 (%) | Mean (%) |"
  assert "| (5) + RSSA + TA + MTC | 2 | 85.0 ± 5.0 | 70.0 ± 10.0 |" in table
  assert "(1)" not in table  # rows without results are left out


def test_finished_runs_are_reused(tmp_path, monkeypatch):
  calls = []

  def fake_train(config, workdir):
    calls.append((config.seed, workdir))
    return {"top1": 0.5, "top5": 1.0, "mean_class_accuracy": 0.4, "steps": 3}

  monkeypatch.setattr(train, "train_and_evaluate", fake_train)
  base = load_config("demo")
  first = ablate.run_setting(base, str(tmp_path), "mtc_spa", 4)
  again = ablate.run_setting(base, str(tmp_path), "mtc_spa", 4)
  assert first == again and len(calls) == 1
  assert calls[0] == (4, str(tmp_path / "mtc_spa_seed4"))
  saved = json.loads((tmp_path / "mtc_spa_seed4" / "result.json").read_text())
  assert saved == first


def test_per_seed_lines_name_each_seed():
  rows = ablations.table_rows("VI")
  results = {
    "ft_pc": [
      {"top1": 0.5, "mean_class_accuracy": 0.5, "seed": 3},
      {"top1": 0.25, "mean_class_accuracy": 0.5, "seed": 2},
    ]
  }
  lines = ablate.per_seed(rows, results).splitlines()
  assert "- (3) + L_pc: Top-1 25.0/50.0 (seeds [2, 3])" in lines
