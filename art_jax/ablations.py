"""The paper's ablation settings (Tables IV, V and VI), in one table.

A setting names every model switch (`config.model.heads`) and every loss
switch (`config.loss`) it needs, so nothing of the base config leaks into
it; `apply` writes them into a config. `TABLES` lists each table's rows in
the paper's order (ART_SPEC section 12, docs/method.md):

  IV  (1) baseline, (2) + RSSA (sum aggregation), (3) + RSSA w/o SE,
      (4) + RSSA + TA, (5) + RSSA + TA + MTC, without text fine-tuning.
  V   MTC terms on IV (4): none, L_spa, L_tem, L_trk, L_spa + L_trk, all
      three (= IV (5)); no text fine-tuning.
  VI  text fine-tuning on IV (5): none (= IV (5)), L_vc, L_pc, both (= the
      full ART). The paper's text does not say which of rows (2) and (3)
      is L_vc; we read (2) as L_vc.

Settings shared by two tables are the same runs (`tools/ablate` reuses
them by name).
"""

import dataclasses
from collections.abc import Mapping

import ml_collections

HEAD_SWITCHES = ("use_rssa", "use_se", "use_ta")
LOSS_SWITCHES = (
  "use_global",
  "use_final",
  "use_mtc",
  "use_spa",
  "use_tem",
  "use_trk",
  "use_ft",
  "use_vc",
  "use_pc",
)


@dataclasses.dataclass(frozen=True)
class Setting:
  """Every switch of one ablation setting."""

  heads: Mapping[str, bool]
  loss: Mapping[str, bool]

  def __post_init__(self):
    if set(self.heads) != set(HEAD_SWITCHES):
      raise ValueError(f"heads must set exactly {HEAD_SWITCHES}")
    if set(self.loss) != set(LOSS_SWITCHES):
      raise ValueError(f"loss must set exactly {LOSS_SWITCHES}")


def _setting(
  *,
  rssa: bool = True,
  se: bool = True,
  ta: bool = True,
  mtc: tuple[bool, bool, bool] | None = None,
  ft: tuple[bool, bool] | None = None,
) -> Setting:
  """mtc: (spa, tem, trk) or None for no MTC; ft: (vc, pc) or None."""
  spa, tem, trk = mtc or (True, True, True)
  vc, pc = ft or (True, True)
  return Setting(
    heads={"use_rssa": rssa, "use_se": se, "use_ta": ta},
    loss={
      "use_global": True,
      "use_final": rssa,
      "use_mtc": mtc is not None,
      "use_spa": spa,
      "use_tem": tem,
      "use_trk": trk,
      "use_ft": ft is not None,
      "use_vc": vc,
      "use_pc": pc,
    },
  )


_ALL = (True, True, True)
SETTINGS: dict[str, Setting] = {
  "baseline": _setting(rssa=False),
  "rssa": _setting(ta=False),
  "rssa_no_se": _setting(se=False, ta=False),
  "rssa_ta": _setting(),
  "rssa_ta_mtc": _setting(mtc=_ALL),
  "mtc_spa": _setting(mtc=(True, False, False)),
  "mtc_tem": _setting(mtc=(False, True, False)),
  "mtc_trk": _setting(mtc=(False, False, True)),
  "mtc_spa_trk": _setting(mtc=(True, False, True)),
  "ft_vc": _setting(mtc=_ALL, ft=(True, False)),
  "ft_pc": _setting(mtc=_ALL, ft=(False, True)),
  "art": _setting(mtc=_ALL, ft=(True, True)),
}

# (setting, what the row adds), in the paper's row order.
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
  "IV": (
    ("baseline", "baseline (UniFormerV2)"),
    ("rssa", "+ RSSA"),
    ("rssa_no_se", "+ RSSA w/o SE"),
    ("rssa_ta", "+ RSSA + TA"),
    ("rssa_ta_mtc", "+ RSSA + TA + MTC"),
  ),
  "V": (
    ("rssa_ta", "no MTC term (= IV (4))"),
    ("mtc_spa", "L_spa"),
    ("mtc_tem", "L_tem"),
    ("mtc_trk", "L_trk"),
    ("mtc_spa_trk", "L_spa + L_trk"),
    ("rssa_ta_mtc", "L_spa + L_tem + L_trk (= IV (5))"),
  ),
  "VI": (
    ("rssa_ta_mtc", "no text fine-tuning (= IV (5))"),
    ("ft_vc", "+ L_vc"),
    ("ft_pc", "+ L_pc"),
    ("art", "+ L_vc + L_pc (ART)"),
  ),
}


def table_rows(table: str) -> list[tuple[str, str]]:
  """[(setting, "(i) label"), ...] of paper table `table` ('IV'|'V'|'VI')."""
  if table not in TABLES:
    raise ValueError(f"unknown table {table!r}; known: {list(TABLES)}")
  return [
    (name, f"({i}) {label}")
    for i, (name, label) in enumerate(TABLES[table], start=1)
  ]


def trains_video_projection(loss: Mapping[str, bool]) -> bool:
  """Whether L_ft trains W_v (L_vc or L_pc's video term is on)."""
  return bool(loss["use_ft"] and (loss["use_vc"] or loss["use_pc"]))


def apply(
  config: ml_collections.ConfigDict, setting: str, seed: int | None = None
) -> ml_collections.ConfigDict:
  """A copy of `config` with every switch of `setting` (and `seed`).

  With model.heads.text_selection="video_text" the selection's projection
  W_v must learn in every setting (spec §3), so L_align is switched on
  exactly where text fine-tuning does not train W_v.
  """
  if setting not in SETTINGS:
    raise ValueError(f"unknown setting {setting!r}; known: {list(SETTINGS)}")
  s = SETTINGS[setting]
  c = ml_collections.ConfigDict(config.to_dict())
  if seed is not None:
    c.seed = seed
  c.model.heads.update(dict(s.heads))
  c.loss.update(dict(s.loss))
  video_text = c.model.heads.get("text_selection") == "video_text"
  c.loss.use_align = bool(
    video_text and s.heads["use_rssa"] and not trains_video_projection(s.loss)
  )
  return c
