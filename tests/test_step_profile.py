"""step_profile: op names -> (pass, module) and device time per module."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from art_jax.tools import step_profile

MODEL = "jit(train_step)/jvp(ART)"
BACKWARD = "jit(train_step)/transpose(jvp(ART))"
BLOCKS = "backbone/backbone._blocks/while/body/closed_call"


@pytest.mark.parametrize(
  "op_name, expected",
  [
    (
      f"{MODEL}/{BLOCKS}/uniblocks_scan_0/resblock/attn/query/dot_general",
      ("forward", "backbone/uniblocks_scan_0/resblock/attn"),
    ),
    (
      f"{BACKWARD}/{BLOCKS}/checkpoint/uniblocks_scan_0/dec/mlp/c_fc/transpose",
      ("backward", "backbone/uniblocks_scan_0/dec/mlp"),
    ),
    (
      f"{BACKWARD}/{BLOCKS}/checkpoint/rematted_computation/uniblocks_scan_0"
      "/resblock/ln_1/ln/add",
      ("remat", "backbone/uniblocks_scan_0/resblock/ln_1"),
    ),
    # A recomputed op whose name lost the scope above the remat.
    (
      "checkpoint/rematted_computation/uniblocks_scan_0/resblock/lmhra2"
      "/pos_embed_0/reduce_sum",
      ("remat", "uniblocks_scan_0/resblock/lmhra2/pos_embed_0"),
    ),
    (
      f"{MODEL}/heads/se/layers/attn/value/...c,chk->...hk/dot_general",
      ("forward", "heads/se/layers/attn"),
    ),
    (f"{MODEL}/heads/add", ("forward", "heads")),
    # jax 0.11 on GPUs adds eval_jaxpr to the scanned bodies' name stacks.
    (
      f"{MODEL}/backbone/eval_jaxpr/resblocks_scan_0/mlp/c_fc/dot_general",
      ("forward", "backbone/resblocks_scan_0/mlp/c_fc"),
    ),
    (f"{MODEL}/add", ("forward", "(model top level)")),
    (
      "jit(train_step)/transpose(jvp(bd,kmd->bkm))/dot_general",
      ("backward", "(losses)"),
    ),
    (
      "jit(train_step)/jvp(jit(log_softmax))/reduce_max",
      ("forward", "(losses)"),
    ),
    ("jit(train_step)/mul", ("update", "(outside the model)")),
  ],
)
def test_classify(op_name, expected):
  assert step_profile.classify(op_name) == expected


def test_classify_depth_and_model_name():
  name = f"{MODEL}/{BLOCKS}/uniblocks_scan_0/resblock/attn/query/dot_general"
  assert step_profile.classify(name, depth=1) == ("forward", "backbone")
  assert step_profile.classify(name, model="Other") == ("forward", "(losses)")


def test_hlo_op_names_reads_instructions_with_metadata():
  text = "\n".join(
    [
      "HloModule jit_f, entry_computation_layout={(f32[4]{0})->f32[4]{0}}",
      "%fused_computation (p: f32[4]) -> f32[4] {",
      '  %p = f32[4]{0} parameter(0), metadata={op_name="in_fusion"}',
      "}",
      "ENTRY %main.3 (x: f32[4]) -> f32[4] {",
      "  %x = f32[4]{0} parameter(0)",
      "  %loop_add_fusion.2 = f32[4]{0} fusion(f32[4]{0} %x), kind=kLoop, "
      'calls=%fused_computation, metadata={op_type="add" '
      'op_name="jit(f)/jvp(ART)/heads/add" source_file="a.py"}',
      "  ROOT %copy.7 = f32[4]{0} copy(%loop_add_fusion.2), "
      'metadata={op_name="jit(f)/mul"}',
      "}",
    ]
  )
  names = step_profile.hlo_op_names(text)
  assert names["loop_add_fusion.2"] == "jit(f)/jvp(ART)/heads/add"
  assert names["copy.7"] == "jit(f)/mul"
  assert names["p"] == "in_fusion" and "x" not in names


def test_summarise_sums_per_step_and_sorts():
  names = {
    "a": f"{MODEL}/heads/add",
    "b": f"{BACKWARD}/heads/mul",
    "c": "jit(train_step)/mul",
  }
  out = step_profile.summarise(
    {"a": 0.3, "b": 0.6, "c": 0.1, "d": 0.2}, names, steps=2, step_s=1.0
  )
  assert out["device_s_per_step"] == pytest.approx(0.6)
  assert out["busy_fraction"] == pytest.approx(0.6)
  assert out["by_pass"] == pytest.approx(
    {"backward": 0.3, "forward": 0.15, "?": 0.1, "update": 0.05}
  )
  assert list(out["by_pass"]) == ["backward", "forward", "?", "update"]
  assert out["by_path"]["heads"] == pytest.approx(0.45)
  assert [r["op"] for r in out["top_ops"]] == ["b", "a", "d", "c"]
  assert "| heads | 450.00 | 75.0 |" in step_profile.markdown(out)
  assert "note" not in out


def test_summarise_says_when_command_buffers_hide_the_ops():
  times = {"command_buffer_12": 0.8, "fusion.1": 0.2}
  out = step_profile.summarise(times, {}, steps=1)
  assert "80% of the time" in out["note"]
  assert step_profile.NO_COMMAND_BUFFERS in step_profile.markdown(out)


class _TwoLayers(nn.Module):
  """A wide and a narrow branch: the wide one does 256x the FLOPs."""

  @nn.compact
  def __call__(self, x):
    wide = nn.Dense(4096, name="wide")(x)
    narrow = nn.Dense(16, name="narrow")(x)
    return jnp.sum(wide**2) + jnp.sum(narrow**2)


def test_profile_calls_attributes_time_to_the_right_module(tmp_path):
  model = _TwoLayers(name="ART")  # the scope classify looks for
  x = jnp.ones((512, 1024))
  params = model.init(jax.random.key(0), x)

  @jax.jit
  def train_step(params, x):
    return jax.value_and_grad(lambda p: model.apply(p, x))(params)

  hlo = train_step.lower(params, x).compile().as_text()
  out = step_profile.profile_calls(
    lambda: train_step(params, x),
    hlo,
    steps=4,
    log_dir=str(tmp_path),
    module="train_step",
  )
  paths = out["by_path"]
  # 256x the FLOPs (typically 30x the time here; only "more" is asserted,
  # as one descheduled thread on a busy 2-core box can stall an op).
  assert paths["wide"] > paths["narrow"] > 0
  # Its forward matmul and the backward one (at least) carry its name.
  wide = [r["pass"] for r in out["top_ops"] if r["path"] == "wide"]
  assert {"forward", "backward"} <= set(wide), wide
  assert out["by_pass"]["forward"] > 0 and out["by_pass"]["backward"] > 0
  assert out["device_s_per_step"] == pytest.approx(sum(paths.values()))
  assert out["trace"].endswith(".xplane.pb")


@pytest.mark.parametrize(
  "op, op_name, kind",
  [
    ("custom-call.88", f"{MODEL}/backbone/mlp/c_fc/dot_general", "matmul"),
    # A backward cuBLAS GEMM whose root is the transpose of the forward's.
    ("custom-call.133", f"{BACKWARD}/backbone/mlp/c_fc/transpose", "matmul"),
    ("dot.1043", f"{BACKWARD}/backbone/mlp/transpose", "matmul"),  # CPU
    ("gemm_fusion_dot.12", f"{MODEL}/heads/add", "matmul"),
    (
      "dot_product_attention_bwd.24",
      f"{BACKWARD}/backbone/attn/x",
      "attention",
    ),
    (
      "input_add_reduce_fusion.3",
      f"{BACKWARD}/backbone/ln/reduce_sum",
      "reduction",
    ),
    (
      "input_concatenate_fusion.9",
      f"{MODEL}/backbone/concatenate",
      "data movement",
    ),
    ("loop_pad_fusion", f"{MODEL}/backbone/attn/pad", "data movement"),
    ("copy.12", "", "data movement"),
    ("loop_multiply_fusion.2", f"{MODEL}/backbone/mlp/mul", "elementwise"),
    ("command_buffer_463", "", "CUDA graph"),
  ],
)
def test_op_kind(op, op_name, kind):
  assert step_profile.op_kind(op, op_name) == kind


def test_saved_summary_prints_again(tmp_path):
  import gzip
  import json
  import subprocess
  import sys

  names = {
    "dot.1": f"{MODEL}/heads/mlp/dot_general",
    "fusion.2": f"{BACKWARD}/{BLOCKS}/resblock/ln/reduce_sum",
  }
  saved = step_profile.summarise({"dot.1": 0.02, "fusion.2": 0.06}, names, 2)
  path = tmp_path / "b8.json.gz"
  with gzip.open(path, "wt") as f:
    json.dump(saved, f)
  again = step_profile.resummarise(saved, depth=1)
  assert again["by_kind"] == pytest.approx({"reduction": 0.03, "matmul": 0.01})
  assert again["by_path"] == pytest.approx({"backbone": 0.03, "heads": 0.01})
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "art_jax.tools.step_profile",
      str(path),
      "--depth=2",
    ],
    capture_output=True,
    text=True,
    check=True,
  )
  assert "| backbone/resblock | 30.00 | 75.0 |" in proc.stdout
  assert "| matmul | 10.00 | 25.0 |" in proc.stdout
