"""Test setup: 8 fake CPU devices, float32 matmuls at full precision."""

import os
import tempfile

# Must happen before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
# XLA:CPU takes 20-40 s to compile even a tiny ART train step; tests that
# build the same program again (resume, eval-after-train) reuse it.
jax.config.update(
  "jax_compilation_cache_dir",
  os.path.join(tempfile.gettempdir(), "art_jax_xla_cache"),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
# grain reads absl flags; tests run without absl.app.run.
flags.FLAGS.mark_as_parsed()
