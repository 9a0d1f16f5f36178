# shellcheck shell=bash
# The GPU environment block shared by run_local.sh and slurm.sbatch: XLA
# compiler flags and runtime settings for performance. Sourced after
# launch/lib.sh; the scripts expose XLA_EXTRA, MEM_FRACTION and ENV to adjust
# it. Every flag below exists in the jaxlib this repository pins
# (tests/test_launch.py checks that XLA accepts them).

# --- XLA / NCCL flags (one block) --------------------------------------------
ART_GPU_XLA_FLAGS=(
  # Overlap collectives with compute (the scheduler that makes async
  # all-gather / reduce-scatter of FSDP and data parallelism pay off).
  --xla_gpu_enable_latency_hiding_scheduler=true
  --xla_gpu_enable_highest_priority_async_stream=true
  # Fewer, larger collectives: combine gradients up to 128 MiB per op.
  --xla_gpu_all_reduce_combine_threshold_bytes=134217728
  --xla_gpu_all_gather_combine_threshold_bytes=134217728
  --xla_gpu_reduce_scatter_combine_threshold_bytes=134217728
  --xla_gpu_enable_all_gather_combine_by_dim=false
  --xla_gpu_enable_reduce_scatter_combine_by_dim=false
  # Pipeline collectives of scanned layers across loop iterations.
  --xla_gpu_enable_pipelined_all_gather=true
  --xla_gpu_enable_pipelined_reduce_scatter=true
  --xla_gpu_enable_pipelined_all_reduce=true
  --xla_gpu_enable_while_loop_double_buffering=true
)
# Fraction of GPU memory JAX preallocates (default 0.75 leaves room unused).
ART_GPU_MEM_FRACTION=0.90
# NCCL: warnings only. Network settings (NCCL_SOCKET_IFNAME, NCCL_IB_HCA, ...)
# depend on the cluster: pass them with ENV="K=V ...".
ART_GPU_NCCL_DEBUG=WARN
# -----------------------------------------------------------------------------

# art_gpu_env XLA_EXTRA MEM_FRACTION ENV: exports the block above plus the
# user's additions (printed under DRY_RUN=1).
art_gpu_env() {
  local xla_extra="$1" mem_fraction="$2" env="$3" kv
  # Order: the block, then XLA_FLAGS already in the environment, then
  # XLA_EXTRA (later flags win).
  local flags="${ART_GPU_XLA_FLAGS[*]}${XLA_FLAGS:+ $XLA_FLAGS}${xla_extra:+ $xla_extra}"
  art_export XLA_FLAGS "$flags"
  art_export XLA_PYTHON_CLIENT_MEM_FRACTION "${mem_fraction:-$ART_GPU_MEM_FRACTION}"
  art_export NCCL_DEBUG "$ART_GPU_NCCL_DEBUG"
  local -a pairs=()
  read -r -a pairs <<<"$env"
  for kv in "${pairs[@]}"; do
    [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*=.*$ ]] || art_usage_error "ENV entry '$kv' is not K=V"
    art_export "${kv%%=*}" "${kv#*=}"
  done
}
