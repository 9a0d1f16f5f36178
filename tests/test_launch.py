"""launch/ scripts: dry runs print the right commands; nothing needs gcloud.

Every script runs under bash with stub `gcloud`, `srun`, `sbatch`, `gsutil`
and `scontrol` first on PATH: a dry run must not call the first four (each
stub records its calls); the scontrol stub answers `show hostnames` the way
SLURM does. One test drives launch/tpu/run.sh and logs.sh for real, with a
gcloud stub that runs the remote command locally, to check that the run
survives in the background, logs per worker and refuses / stops an earlier
run.
"""

import contextlib
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = {
  "tpu/create": LAUNCH / "tpu" / "create.sh",
  "tpu/setup": LAUNCH / "tpu" / "setup.sh",
  "tpu/run": LAUNCH / "tpu" / "run.sh",
  "tpu/logs": LAUNCH / "tpu" / "logs.sh",
  "tpu/delete": LAUNCH / "tpu" / "delete.sh",
  "gpu/run_local": LAUNCH / "gpu" / "run_local.sh",
  "gpu/slurm": LAUNCH / "gpu" / "slurm.sbatch",
  "gpu/bench": LAUNCH / "gpu" / "bench.sh",
  "dataflow/prepare": LAUNCH / "dataflow" / "prepare.sh",
}
# Arguments that satisfy each script's required ones.
REQUIRED = {
  "tpu/create": ["NAME=art", "ZONE=us-central2-b", "ACCELERATOR=v4-32"],
  "tpu/setup": ["NAME=art", "ZONE=us-central2-b", "BUCKET=my-bucket"],
  "tpu/run": [
    "NAME=art",
    "ZONE=us-central2-b",
    "CONFIG=configs/finegym.py:gym99,b16",
    "WORKDIR=/mnt/gcs/runs/gym99",
  ],
  "tpu/logs": ["NAME=art", "ZONE=us-central2-b"],
  "tpu/delete": ["NAME=art", "ZONE=us-central2-b"],
  "gpu/run_local": ["CONFIG=configs/finegym.py:gym99,b16"],
  "gpu/slurm": ["CONFIG=configs/kinetics.py:k400", "WORKDIR=/shared/runs/k400"],
  "gpu/bench": [],  # every key has a default
  "dataflow/prepare": [
    "DATASET=finegym",
    "VIDEOS=gs://b/raw/videos",
    "OUT=gs://b/data/gym99",
    "PROJECT=my-project",
    "REGION=us-central1",
    "TEMP=gs://b/tmp",
  ],
}
# A two-node allocation as sbatch describes it to the batch script.
SLURM_ENV = {
  "SLURM_JOB_ID": "4242",
  "SLURM_JOB_NODELIST": "gpu[003-004]",
  "SLURM_JOB_NUM_NODES": "2",
  "SLURM_GPUS_ON_NODE": "8",
  "SLURM_CPUS_ON_NODE": "96",
}
RECORDING_STUBS = ("gcloud", "srun", "sbatch", "gsutil")
SCONTROL_STUB = """#!/usr/bin/env bash
# Stub: `scontrol show hostnames LIST` for the lists the tests use.
[ "$1 $2" = "show hostnames" ] || exit 1
case "$3" in
  'gpu[003-004]') printf 'gpu003\\ngpu004\\n' ;;
  *) printf '%s\\n' "${3%%,*}" ;;
esac
"""


@pytest.fixture
def sandbox(tmp_path):
  """PATH with the stubs first, a clean environment, a call log."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  calls = tmp_path / "calls.log"
  for name in RECORDING_STUBS:
    stub = bin_dir / name
    stub.write_text(
      f'#!/usr/bin/env bash\necho "{name} $*" >> {calls}\nexit 97\n'
    )
    stub.chmod(0o755)
  (bin_dir / "scontrol").write_text(SCONTROL_STUB)
  (bin_dir / "scontrol").chmod(0o755)
  env = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("SLURM_", "XLA_", "JAX_", "NCCL_", "LIBTPU"))
    and k not in ("DRY_RUN", "CUDA_VISIBLE_DEVICES", "TMPDIR")
  }
  env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
  env["TMPDIR"] = str(tmp_path)
  return {"env": env, "calls": calls, "tmp": tmp_path, "bin": bin_dir}


def launch(sandbox, script, *args, env=None, check=True):
  """Runs a launch script with bash; returns the CompletedProcess."""
  full_env = dict(sandbox["env"], **(env or {}))
  proc = subprocess.run(
    ["bash", str(SCRIPTS[script]), *args],
    env=full_env,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
  )
  if check:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
  return proc


def dry(sandbox, script, *args, env=None):
  """A dry run: the printed commands, each split into words."""
  proc = launch(sandbox, script, "DRY_RUN=1", *args, env=env)
  assert not sandbox["calls"].exists(), sandbox["calls"].read_text()
  lines = [ln[2:] for ln in proc.stdout.splitlines() if ln.startswith("+ ")]
  assert lines, proc.stdout
  return [shlex.split(ln) for ln in lines], proc.stdout


def flag(words, name):
  """The value of --name=value in a word list."""
  values = [w.split("=", 1)[1] for w in words if w.startswith(f"--{name}=")]
  assert len(values) == 1, (name, words)
  return values[0]


def remote_command(cmds):
  """The --command of the (single) gcloud ssh call, checked by bash -n."""
  ssh = [
    c
    for c in cmds
    if c[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] and c[4] == "ssh"
  ]
  assert len(ssh) == 1, cmds
  remote = flag(ssh[0], "command")
  syntax = subprocess.run(
    ["bash", "-n", "-c", remote], capture_output=True, text=True
  )
  assert syntax.returncode == 0, (remote, syntax.stderr)
  return ssh[0], remote


# --- common behaviour ------------------------------------------------------


@pytest.mark.parametrize("script", sorted(s for s in SCRIPTS if REQUIRED[s]))
def test_missing_required_argument_fails_with_usage(sandbox, script):
  proc = launch(sandbox, script, "DRY_RUN=1", check=False)
  assert proc.returncode == 2, proc.stderr
  assert "is required" in proc.stderr
  assert "Usage" in proc.stderr
  assert not sandbox["calls"].exists()
  # Each required argument on its own is reported when it alone is missing.
  for i, arg in enumerate(REQUIRED[script]):
    rest = REQUIRED[script][:i] + REQUIRED[script][i + 1 :]
    proc = launch(sandbox, script, "DRY_RUN=1", *rest, check=False)
    key = arg.split("=", 1)[0]
    assert proc.returncode == 2, (key, proc.stderr)
    assert f"{key} is required" in proc.stderr


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_unknown_keys_and_dry_run_flag(sandbox, script):
  help_ = launch(sandbox, script, "--help")
  assert "Usage" in help_.stdout and "DRY_RUN" in help_.stdout
  env = SLURM_ENV if script == "gpu/slurm" else None
  typo = launch(
    sandbox,
    script,
    *REQUIRED[script],
    "DRY_RUN=1",
    "ZOEN=x",
    env=env,
    check=False,
  )
  assert typo.returncode == 2 and "unknown argument: ZOEN" in typo.stderr
  # --dry-run is the same as DRY_RUN=1, and runs nothing.
  proc = launch(sandbox, script, *REQUIRED[script], "--dry-run", env=env)
  assert "+ " in proc.stdout
  assert not sandbox["calls"].exists()


def test_shellcheck_clean():
  if shutil.which("shellcheck") is None:
    pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
  files = [
    LAUNCH / "lib.sh",
    LAUNCH / "gpu" / "env.sh",
    *sorted(SCRIPTS.values()),
  ]
  proc = subprocess.run(
    ["shellcheck", "-x", *map(str, files)],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scripts_are_executable():
  for path in SCRIPTS.values():
    assert os.access(path, os.X_OK), path


# --- Cloud TPU -------------------------------------------------------------


def test_tpu_create(sandbox):
  cmds, _ = dry(
    sandbox,
    "tpu/create",
    *REQUIRED["tpu/create"],
    "PROJECT=my-project",
    "SPOT=1",
  )
  (cmd,) = cmds
  assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "art"]
  assert "--accelerator-type=v4-32" in cmd and "--spot" in cmd
  assert "--version=tpu-ubuntu2204-base" in cmd
  assert "--zone=us-central2-b" in cmd and "--project=my-project" in cmd

  cmds, _ = dry(
    sandbox,
    "tpu/create",
    "NAME=art",
    "ZONE=us-east5-a",
    "ACCELERATOR=v5p-64",
    "QUEUED=1",
    "SPOT=1",
    "VALID_UNTIL=6h",
  )
  (cmd,) = cmds
  assert cmd[:6] == [
    "gcloud",
    "compute",
    "tpus",
    "queued-resources",
    "create",
    "art-qr",
  ]
  for word in (
    "--node-id=art",
    "--runtime-version=v2-alpha-tpuv5",
    "--accelerator-type=v5p-64",
    "--spot",
    "--valid-until-duration=6h",
  ):
    assert word in cmd, word

  (cmd,), _ = dry(
    sandbox,
    "tpu/create",
    "NAME=art",
    "ZONE=z",
    "ACCELERATOR=v6e-64",
    "PREEMPTIBLE=1",
  )
  assert "--version=v2-alpha-tpuv6e" in cmd and "--preemptible" in cmd
  bad = launch(
    sandbox,
    "tpu/create",
    *REQUIRED["tpu/create"],
    "SPOT=1",
    "PREEMPTIBLE=1",
    "DRY_RUN=1",
    check=False,
  )
  assert bad.returncode == 2


def test_tpu_setup_copies_installs_and_mounts(sandbox):
  cmds, _ = dry(sandbox, "tpu/setup", *REQUIRED["tpu/setup"], "MOUNT=/mnt/gcs")
  tar, scp = cmds[0], cmds[1]
  assert tar[0] == "tar" and str(REPO) in tar and "--exclude=./.venv" in tar
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert "--worker=all" in scp
  ssh, remote = remote_command(cmds)
  assert "--worker=all" in ssh
  assert "pip install" in remote and "-e ." in remote
  assert "'jax[tpu]'" in remote
  assert "gcsfuse" in remote and "apt-get install" in remote
  assert "gcsfuse --implicit-dirs" in remote
  assert " my-bucket /mnt/gcs" in remote
  assert "mountpoint -q /mnt/gcs" in remote

  cmds, _ = dry(
    sandbox,
    "tpu/setup",
    "NAME=art",
    "ZONE=z",
    "SKIP_MOUNT=1",
    "REPO_URL=https://example.com/art-jax.git",
    "REF=v1",
  )
  assert len(cmds) == 1  # no tarball, no scp
  _, remote = remote_command(cmds)
  assert "git clone -q https://example.com/art-jax.git art_jax" in remote
  assert "fetch -q origin v1" in remote
  assert "gcsfuse" not in remote


def test_tpu_run_same_command_on_all_workers(sandbox):
  cmds, _ = dry(
    sandbox,
    "tpu/run",
    *REQUIRED["tpu/run"],
    "MODE=train",
    "ENV=FOO=1",
    "--",
    "--config.batch_size=256",
    "--config.data.dir=/mnt/gcs/data/my gym",
  )
  ssh, remote = remote_command(cmds)
  assert "--worker=all" in ssh
  assert "nohup .venv/bin/python -m art_jax.main" in remote
  assert (
    "--config=configs/finegym.py:gym99,b16 "
    "--workdir=/mnt/gcs/runs/gym99 --mode=train "
    "--config.batch_size=256 "
    "--config.data.dir='/mnt/gcs/data/my gym'"
  ) in remote
  assert "export LIBTPU_INIT_ARGS='--xla_tpu" in remote
  assert "export FOO=1" in remote
  assert 'gym99-"$(hostname)".log' in remote  # one log per worker


def _fake_worker(sandbox):
  """gcloud stub that runs `ssh --command` here, in a fake worker $HOME."""
  home = sandbox["tmp"] / "worker_home"
  venv_bin = home / "art_jax" / ".venv" / "bin"
  venv_bin.mkdir(parents=True)
  fake_python = venv_bin / "python"
  fake_python.write_text(
    '#!/usr/bin/env bash\necho "main args: $*"\nexec sleep 30\n'
  )  # keeps the pid: SIGTERM ends it
  fake_python.chmod(0o755)
  gcloud = sandbox["bin"] / "gcloud"
  gcloud.write_text(
    "#!/usr/bin/env bash\n"
    f'echo "gcloud $*" >> {sandbox["tmp"]}/gcloud_real.log\n'
    'for a in "$@"; do case "$a" in --command=*) cmd="${a#--command=}";;'
    " esac; done\n"
    f'cd {home} && HOME={home} exec bash -c "$cmd"\n'
  )
  return home


def test_tpu_run_and_logs_for_real_with_a_local_worker(sandbox):
  home = _fake_worker(sandbox)
  args = (*REQUIRED["tpu/run"], "--", "--config.batch_size=8")
  pids = []
  try:
    proc = launch(sandbox, "tpu/run", *args)
    assert "started pid" in proc.stdout
    log_dir = home / "art_jax_logs"
    pid_file = log_dir / "gym99.pid"
    pids.append(int(pid_file.read_text()))
    (log,) = log_dir.glob("gym99-*.log")
    deadline = time.time() + 10
    while "main args" not in log.read_text() and time.time() < deadline:
      time.sleep(0.05)
    assert (
      "main args: -m art_jax.main --config=configs/finegym.py:gym99,b16"
      " --workdir=/mnt/gcs/runs/gym99 --mode=train_and_eval"
      " --config.batch_size=8"
    ) in log.read_text()
    os.kill(pids[0], 0)  # still running after the "ssh session" ended

    # A second start while the first runs is refused...
    again = launch(sandbox, "tpu/run", *args, check=False)
    assert again.returncode != 0 and "still going" in again.stderr
    # ...unless KILL=1, which stops it (SIGTERM) and starts a new one.
    launch(sandbox, "tpu/run", "KILL=1", *args)
    pids.append(int(pid_file.read_text()))
    assert pids[1] != pids[0]
    with pytest.raises(ProcessLookupError):
      os.kill(pids[0], 0)
    logs = launch(
      sandbox,
      "tpu/logs",
      "NAME=art",
      "ZONE=z",
      "FOLLOW=0",
      "RUN_NAME=gym99",
      "LINES=5",
    )
    assert "main args" in logs.stdout
  finally:
    for pid in pids:
      with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_tpu_logs_and_delete(sandbox):
  (cmd,), _ = dry(
    sandbox, "tpu/logs", "NAME=art", "ZONE=z", "WORKER=3", "RUN_NAME=gym99"
  )
  assert "--worker=3" in cmd
  _, remote = remote_command([cmd])
  assert "gym99-*.log" in remote and "tail -n 100 -F" in remote

  (cmd,), _ = dry(sandbox, "tpu/delete", "NAME=art", "ZONE=z")
  assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "art"]
  assert "--quiet" in cmd
  (cmd,), _ = dry(sandbox, "tpu/delete", "NAME=art", "ZONE=z", "QUEUED=1")
  assert cmd[:6] == [
    "gcloud",
    "compute",
    "tpus",
    "queued-resources",
    "delete",
    "art-qr",
  ]
  assert "--force" in cmd


# --- GPU -------------------------------------------------------------------


def _exports(stdout):
  env = {}
  for line in stdout.splitlines():
    if line.startswith("+ export "):
      key, value = line[len("+ export ") :].split("=", 1)
      env[key] = shlex.split(value)[0]
  return env


def test_gpu_run_local(sandbox):
  cmds, out = dry(
    sandbox,
    "gpu/run_local",
    *REQUIRED["gpu/run_local"],
    "WORKDIR=runs/g",
    "GPUS=0,1",
    "XLA_EXTRA=--xla_dump_to=/x",
    "--config.batch_size=16",
  )
  env = _exports(out)
  assert "--xla_gpu_enable_latency_hiding_scheduler=true" in env["XLA_FLAGS"]
  assert env["XLA_FLAGS"].endswith("--xla_dump_to=/x")
  assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
  assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.90"
  main = cmds[-1]
  assert main[1:3] == ["-m", "art_jax.main"]
  assert main[3:] == [
    "--config=configs/finegym.py:gym99,b16",
    "--mode=train_and_eval",
    "--workdir=runs/g",
    "--config.batch_size=16",
  ]


def test_gpu_xla_flags_are_known_to_xla(sandbox):
  """A removed or misspelt flag in the block makes XLA abort at start-up."""
  _, out = dry(sandbox, "gpu/run_local", *REQUIRED["gpu/run_local"])
  env = dict(
    sandbox["env"], XLA_FLAGS=_exports(out)["XLA_FLAGS"], JAX_PLATFORMS="cpu"
  )
  proc = subprocess.run(
    [sys.executable, "-c", "import jax; print(jax.jit(lambda x: x + 1)(1.0))"],
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "2.0" in proc.stdout


def _srun(cmds):
  (srun,) = [c for c in cmds if c[0] == "srun"]
  i = srun.index("bash")
  assert srun[i + 1] == "-c"
  return srun[:i], srun[i + 2], srun[i + 4 :]  # options, task, main command


def _run_task(task, env):
  """Runs the per-task wrapper with `echo` as the program."""
  proc = subprocess.run(
    ["bash", "-c", task, "art-jax-task", "echo", "main"],
    env=dict(os.environ, **env),
    capture_output=True,
    text=True,
    check=True,
  )
  return proc.stdout.strip()


def test_slurm_one_process_per_node(sandbox):
  cmds, out = dry(
    sandbox,
    "gpu/slurm",
    *REQUIRED["gpu/slurm"],
    "--config.batch_size=128",
    env=SLURM_ENV,
  )
  opts, task, main = _srun(cmds)
  for word in (
    "--nodes=2",
    "--ntasks=2",
    "--ntasks-per-node=1",
    "--kill-on-bad-exit=1",
    "--cpus-per-task=96",
  ):
    assert word in opts, word
  assert main[1:3] == ["-m", "art_jax.main"]
  for word in (
    "--config=configs/kinetics.py:k400",
    "--workdir=/shared/runs/k400",
    "--coordinator_address=gpu003:24242",
    "--num_processes=2",
    "--config.batch_size=128",
  ):
    assert word in main, word
  env = _exports(out)
  assert env["JAX_LOCAL_DEVICE_IDS"] == "0,1,2,3,4,5,6,7"
  assert "--xla_gpu_enable_latency_hiding_scheduler=true" in env["XLA_FLAGS"]
  # Each task appends its own process id.
  assert _run_task(task, {"SLURM_PROCID": "1", "SLURM_LOCALID": "0"}) == (
    "main --process_id=1"
  )


def test_slurm_one_process_per_gpu(sandbox):
  cmds, out = dry(
    sandbox,
    "gpu/slurm",
    *REQUIRED["gpu/slurm"],
    "PROCESS_PER=gpu",
    "PORT=31337",
    "CONTAINER_IMAGE=nvcr.io/nvidia/jax:latest",
    "CONTAINER_MOUNTS=/shared:/shared",
    env=SLURM_ENV,
  )
  opts, task, main = _srun(cmds)
  for word in (
    "--ntasks=16",
    "--ntasks-per-node=8",
    "--cpus-per-task=12",
    "--container-image=nvcr.io/nvidia/jax:latest",
    "--container-mounts=/shared:/shared",
  ):
    assert word in opts, word
  assert "--coordinator_address=gpu003:31337" in main
  assert "--num_processes=16" in main
  assert "JAX_LOCAL_DEVICE_IDS" not in _exports(out)
  run = subprocess.run(
    [
      "bash",
      "-c",
      task,
      "art-jax-task",
      "bash",
      "-c",
      'echo "$JAX_LOCAL_DEVICE_IDS $*"',
      "x",
    ],
    env=dict(os.environ, SLURM_PROCID="13", SLURM_LOCALID="5"),
    capture_output=True,
    text=True,
    check=True,
  )
  assert run.stdout.strip() == "5 --process_id=13"


def test_slurm_outside_an_allocation(sandbox):
  proc = launch(
    sandbox, "gpu/slurm", *REQUIRED["gpu/slurm"], "DRY_RUN=1", check=False
  )
  assert proc.returncode == 2 and "not inside a SLURM allocation" in (
    proc.stderr
  )
  cmds, _ = dry(
    sandbox,
    "gpu/slurm",
    *REQUIRED["gpu/slurm"],
    "NODELIST=a100-[7-9]",
    "NNODES=3",
    "GPUS_PER_NODE=4",
  )
  _, _, main = _srun(cmds)
  assert "--num_processes=3" in main


@pytest.mark.parametrize(
  "nodelist,first",
  [
    ("gpu[003-008,12],x", "gpu003"),
    ("a,b", "a"),
    ("node7", "node7"),
    ("n[1-2]-ib,z[3]", "n1-ib"),
    ("x,n[1-2]", "x"),
  ],
)
def test_first_host_without_scontrol(nodelist, first):
  proc = subprocess.run(
    [
      "bash",
      "-c",
      'source launch/lib.sh && art_first_host "$1"',
      "_",
      nodelist,
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    check=True,
  )
  assert proc.stdout.strip() == first


# --- GPU benchmark (launch/gpu/bench.sh) -----------------------------------

# A stand-in interpreter for bench.sh: fake rows from the two tools (a
# per-device batch >= 24 is "OOM"; STUB_HANG=1 hangs after the first train
# row), the real Python for the summary (`PYTHON - OUT ...`).
STUB_PYTHON = """#!REAL_PYTHON
import json, os, sys, time
if sys.argv[1] == "-":
  os.execv("REAL_PYTHON", ["REAL_PYTHON", *sys.argv[1:]])
with open(os.environ["STUB_CALLS"], "a") as f:
  f.write(" ".join(sys.argv[1:]) + "\\n")
args = dict(a[2:].split("=", 1) for a in sys.argv[3:] if "=" in a)
sizes = [int(b) for b in args["batch_sizes"].split(",")]
ndev = int(os.environ["STUB_NDEV"])
dev = "NVIDIA H100 80GB HBM3"
rows = []
if sys.argv[2] == "art_jax.tools.bench_train":
  for b in sizes:
    per = b // ndev
    if per >= 24:
      rows.append({"device": dev, "batch": b, "step_s": "OOM"})
      break
    rows.append({"device": dev, "devices": ndev, "batch": b, "frames": 16,
                 "crop": 224, "dtype": "bfloat16", "compile_s": 30.0,
                 "step_s": 0.01 * per, "clips_per_s": b / (0.01 * per),
                 "tflop_per_step_per_device": 1.0,
                 "mfu": 0.5 if "b16" in args["config"] else 0.4,
                 "temp_gib": 1.0, "peak_gib": 2.0 * per})
    print(json.dumps(rows[-1]), flush=True)
    if os.environ.get("STUB_HANG"):
      time.sleep(120)
else:
  for b in sizes:
    ms = 12.0 if b == 1 else 8.0
    rows.append({"device": dev, "batch": b, "frames": 16, "crop": 224,
                 "dtype": "bfloat16", "ms_per_batch": ms * b,
                 "ms_per_clip": ms, "clips_per_s": 1e3 / ms})
    print(json.dumps(rows[-1]), flush=True)
with open(args["json_out"], "w") as f:
  json.dump(rows, f)
"""


def _bench_cmd(cmds, tool, model):
  """The (single) dry-run command of `tool` for `model`, without the
  `timeout -k 10 LIMIT` prefix and the `2>err | tee log` suffix."""
  found = [
    c
    for c in cmds
    if f"art_jax.tools.{tool}" in c
    and any(w.startswith("--config=") and w.endswith(f",{model}") for w in c)
  ]
  assert len(found) == 1, (tool, model, cmds)
  cmd = found[0]
  assert cmd[:3] == ["timeout", "-k", "10"], cmd
  assert cmd[-4].startswith("2>") and cmd[-3:-1] == ["|", "tee"], cmd
  return int(cmd[3]), cmd[4:-4], cmd[-4][2:], cmd[-1]


def test_gpu_bench_dry_run(sandbox):
  out = sandbox["tmp"] / "bench"
  cmds, stdout = dry(
    sandbox,
    "gpu/bench",
    f"OUT={out}",
    "NDEV=2",
    "XLA_EXTRA=--xla_dump_to=/x",
    "--",
    "--config.model.remat_policy=minimal",
  )
  env = _exports(stdout)
  assert "--xla_gpu_enable_latency_hiding_scheduler=true" in env["XLA_FLAGS"]
  assert env["XLA_FLAGS"].endswith("--xla_dump_to=/x")
  assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.90"
  # Compile times are measured, never read from a persistent cache.
  assert env["JAX_ENABLE_COMPILATION_CACHE"] == "false"
  assert "JAX_PLATFORMS" not in env
  per_device = {"b16": [32, 128], "l14": [16, 64]}
  limits = []
  for tool in ("bench_train", "bench_infer"):
    for model in ("b16", "l14"):
      limit, cmd, err, log = _bench_cmd(cmds, tool, model)
      limits.append(limit)
      assert cmd[1:3] == ["-m", f"art_jax.tools.{tool}"]
      assert cmd[3] == f"--config=configs/finegym.py:gym99,{model}"
      for word in (
        "--config.model.dtype=bfloat16",
        "--config.data.num_frames=16",
        "--config.data.crop_size=224",
        "--config.mesh.data=-1",
        "--config.model.attention_impl=cudnn",
        "--steps=5",
        "--config.model.remat_policy=minimal",
      ):
        assert word in cmd, (word, cmd)
      kind = tool.split("_")[1]
      assert flag(cmd, "json_out") == f"{out}/{model}_{kind}.json"
      assert (err, log) == (
        f"{out}/{model}_{kind}.err",
        f"{out}/{model}_{kind}.log",
      )
      sizes = flag(cmd, "batch_sizes")
      if tool == "bench_train":  # global = per-device x NDEV, ascending
        assert sizes == ",".join(str(2 * b) for b in per_device[model])
      else:
        assert sizes == "1,32"
  # Train before inference; every call has a timeout, all within 8 minutes.
  assert [c[c.index("-m") + 1] for c in cmds if "timeout" in c] == [
    "art_jax.tools.bench_train"
  ] * 2 + ["art_jax.tools.bench_infer"] * 2
  assert all(t >= 15 for t in limits) and sum(limits) <= 450, limits
  assert not out.exists()  # a dry run creates nothing


def test_gpu_bench_keys_and_gpu_count(sandbox):
  base = ["DRY_RUN=1", f"OUT={sandbox['tmp']}/o"]
  for args, message in [
    (["OUT="], "OUT is required"),
    (["MODELS="], "MODELS is required"),
    (["MODELS=b16 vit"], "unknown model 'vit'"),
    (["STEPS=0"], "STEPS must be"),
    (["BUDGET=10s"], "BUDGET must be"),
    (["BATCHES=b16:8,16"], "no sizes for l14"),
    (["BATCHES=8;16"], "must look like"),
    (["CPU_SMOKE=maybe"], "CPU_SMOKE must be 0 or 1"),
    (["NDEV=two"], "NDEV must be"),
    (["ATTENTION=flash"], "ATTENTION must be xla or cudnn"),
    (["ZOEN=1"], "unknown argument: ZOEN"),
  ]:
    proc = launch(sandbox, "gpu/bench", *base, *args, check=False)
    assert proc.returncode == 2, (args, proc.stderr)
    assert message in proc.stderr and "Usage" in proc.stderr, proc.stderr

  # The GPU count: CUDA_VISIBLE_DEVICES, else nvidia-smi -L.
  smi = sandbox["bin"] / "nvidia-smi"
  smi.write_text(
    "#!/usr/bin/env bash\nfor i in 0 1 2 3; do echo "
    '"GPU $i: NVIDIA H100 80GB HBM3 (UUID: GPU-$i)"; done\n'
  )
  smi.chmod(0o755)
  cmds, _ = dry(sandbox, "gpu/bench", "MODELS=l14")
  assert (
    flag(_bench_cmd(cmds, "bench_train", "l14")[1], "batch_sizes") == "64,256"
  )
  cmds, _ = dry(
    sandbox,
    "gpu/bench",
    "MODELS=l14",
    "BATCHES=4,8",
    env={"CUDA_VISIBLE_DEVICES": "2,3"},
  )
  assert (
    flag(_bench_cmd(cmds, "bench_train", "l14")[1], "batch_sizes") == "8,16"
  )
  # No GPU: a real run refuses (a dry run assumes one).
  smi.write_text("#!/usr/bin/env bash\nexit 9\n")
  proc = launch(sandbox, "gpu/bench", f"OUT={sandbox['tmp']}/o", check=False)
  assert proc.returncode == 1 and "no GPU found" in proc.stderr
  assert not (sandbox["tmp"] / "o").exists()


def test_gpu_bench_kinds_and_profile(sandbox):
  out = sandbox["tmp"] / "o"
  cmds, _ = dry(
    sandbox,
    "gpu/bench",
    f"OUT={out}",
    "KINDS=train",
    "PROFILE=3",
    "MODELS=b16 l14",
    "NDEV=1",
  )
  # Only the train benchmarks run, each profiled into its own folder, and
  # they share the whole budget.
  assert all("art_jax.tools.bench_infer" not in c for c in cmds)
  limits = []
  for model in ("b16", "l14"):
    limit, cmd, _, _ = _bench_cmd(cmds, "bench_train", model)
    limits.append(limit)
    assert flag(cmd, "profile_steps") == "3"
    assert flag(cmd, "profile_dir") == f"{out}/{model}_profile"
  assert sum(limits) > 400, limits
  cmds, _ = dry(sandbox, "gpu/bench", f"OUT={out}", "KINDS=infer", "NDEV=1")
  assert all("art_jax.tools.bench_train" not in c for c in cmds)
  _, cmd, _, _ = _bench_cmd(cmds, "bench_infer", "b16")
  assert not any(w.startswith("--profile") for w in cmd)
  # Off by default.
  cmds, _ = dry(sandbox, "gpu/bench", f"OUT={out}", "NDEV=1")
  _, cmd, _, _ = _bench_cmd(cmds, "bench_train", "b16")
  assert not any(w.startswith("--profile") for w in cmd)
  for args, message in [
    (["KINDS=train eval"], "unknown benchmark 'eval'"),
    (["KINDS="], "KINDS is required"),
    (["PROFILE=three"], "PROFILE must be"),
  ]:
    proc = launch(
      sandbox, "gpu/bench", "DRY_RUN=1", f"OUT={out}", *args, check=False
    )
    assert proc.returncode == 2, (args, proc.stderr)
    assert message in proc.stderr, proc.stderr


def test_gpu_bench_cpu_smoke_dry_run(sandbox):
  cmds, stdout = dry(sandbox, "gpu/bench", "CPU_SMOKE=1")
  assert _exports(stdout)["JAX_PLATFORMS"] == "cpu"
  for tool in ("bench_train", "bench_infer"):
    for model in ("b16", "l14"):
      _, cmd, _, _ = _bench_cmd(cmds, tool, model + ",runlocal")
      for word in (
        "--config.data.num_frames=8",
        "--config.data.crop_size=32",
        "--config.model.attention_impl=xla",
        "--steps=2",
      ):
        assert word in cmd, (word, cmd)
      assert flag(cmd, "batch_sizes") == (
        "2,4" if tool == "bench_train" else "1,32"
      )


def _stub_python(sandbox, ndev):
  stub = sandbox["bin"] / "stub-python"
  stub.write_text(STUB_PYTHON.replace("REAL_PYTHON", sys.executable))
  stub.chmod(0o755)
  calls = sandbox["tmp"] / "python_calls.log"
  return stub, {"STUB_CALLS": str(calls), "STUB_NDEV": str(ndev)}


def test_gpu_bench_summary_and_oom_search(sandbox):
  """With a stand-in for the tools: the search, the files, the summary."""
  out = sandbox["tmp"] / "bench"
  stub, env = _stub_python(sandbox, ndev=2)
  proc = launch(
    sandbox,
    "gpu/bench",
    f"OUT={out}",
    f"PYTHON={stub}",
    "NDEV=2",
    "BATCHES=b16:16,32,48,64 l14:8,12,16,24",
    env=env,
  )
  calls = pathlib.Path(env["STUB_CALLS"]).read_text().splitlines()
  assert len(calls) == 4
  summary = (out / "summary.md").read_text()
  assert summary.strip() in proc.stdout
  # Per-device sizes >= 24 are OOM: B/16 16 fits, 32 does not; L/14 16, 24.
  assert "| b16 | 16 | OOM at 32 | 0.160 | 200.0 | 50.0 | 32.0 | 30.0 |" in (
    summary
  )
  assert "| l14 | 16 | OOM at 24 | 0.160 | 200.0 | 40.0 | 32.0 | 30.0 |" in (
    summary
  )
  assert "| l14 | 32 | 8.00 | 256.00 | 125.0 |" in summary
  assert "| b16 | 1 | 12.00 | 12.00 | 83.3 |" in summary
  assert "B/16 train MFU >= 45%: best 50.0% (met)" in summary
  assert "largest 16 (met)" in summary
  assert "8.00 ms (met; paper 36.2 ms/clip on an A40)" in summary
  assert "NVIDIA H100 80GB HBM3 x 2" in summary
  results = json.loads((out / "results.json").read_text())
  assert results["models"]["l14"]["train"][-1] == {
    "device": "NVIDIA H100 80GB HBM3",
    "batch": 48,
    "step_s": "OOM",
  }
  assert results["models"]["b16"]["train_status"] == "ok"
  for name in ("b16_train", "l14_train", "b16_infer", "l14_infer"):
    assert (out / f"{name}.json").exists() and (out / f"{name}.log").exists()
    assert (out / f"{name}.rc").read_text().strip() == "0"


def test_gpu_bench_time_limit_keeps_printed_rows(sandbox):
  """A call cut by its timeout keeps its rows; no time left skips a call."""
  out = sandbox["tmp"] / "bench"
  stub, env = _stub_python(sandbox, ndev=1)
  # BUDGET=20 with one model: train gets 15 s (3/4), inference < 15 s.
  proc = launch(
    sandbox,
    "gpu/bench",
    f"OUT={out}",
    f"PYTHON={stub}",
    "NDEV=1",
    "MODELS=b16",
    "BUDGET=20",
    "BATCHES=16,32",
    env=dict(env, STUB_HANG="1"),
  )
  assert "cut by its 15s timeout" in proc.stderr
  assert "skipping infer b16" in proc.stderr
  assert (out / "b16_train.rc").read_text().strip() == "124"
  rows = json.loads((out / "b16_train.json").read_text())
  assert [r["batch"] for r in rows] == [16]
  summary = (out / "summary.md").read_text()
  assert "| b16 | 16 | time limit |" in summary
  assert "| b16 | - | skipped (no time left) | - | - |" in summary


@pytest.mark.slow
def test_gpu_bench_cpu_smoke_real_run(sandbox):
  """CPU_SMOKE=1 runs the real tools on the tiny model, end to end."""
  out = sandbox["tmp"] / "bench"
  proc = subprocess.run(
    [
      "bash",
      str(SCRIPTS["gpu/bench"]),
      "CPU_SMOKE=1",
      "MODELS=b16",
      "BATCHES=2",
      f"OUT={out}",
    ],
    env=sandbox["env"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
  assert "| model | largest batch/device | search ended |" in proc.stdout
  assert "| b16 | 2 | fits all sizes |" in proc.stdout
  assert "| model | infer batch | ms/clip |" in proc.stdout
  assert "Device: cpu x 1" in proc.stdout
  (train,) = json.loads((out / "b16_train.json").read_text())
  assert (train["batch"], train["frames"], train["crop"]) == (2, 8, 32)
  assert train["step_s"] > 0 and train["compile_s"] > 0
  infer = json.loads((out / "b16_infer.json").read_text())
  assert [r["batch"] for r in infer] == [1, 32]
  assert all(r["ms_per_clip"] > 0 for r in infer)
  assert (out / "summary.md").read_text().strip() in proc.stdout
  results = json.loads((out / "results.json").read_text())
  assert results["models"]["b16"]["infer_status"] == "ok"


# --- Dataflow --------------------------------------------------------------


def test_dataflow_prepare(sandbox):
  cmds, _ = dry(
    sandbox,
    "dataflow/prepare",
    *REQUIRED["dataflow/prepare"],
    "VARIANT=gym99",
    "ANNOTATIONS=gs://b/raw/ann",
    "MAX_WORKERS=64",
    "JOB_NAME=prep-gym99",
    "SPLITS=train",
    "--short_side=320",
  )
  main = cmds[-1]
  assert main[1:3] == ["-m", "art_jax.data.prepare"]
  for word in (
    "--dataset=finegym",
    "--variant=gym99",
    "--videos=gs://b/raw/videos",
    "--annotations=gs://b/raw/ann",
    "--out=gs://b/data/gym99",
    "--runner=beam",
    "--splits=train",
    "--short_side=320",
  ):
    assert word in main, word
  beam = shlex.split(flag(main, "beam_options"))
  for word in (
    "--runner=DataflowRunner",
    "--project=my-project",
    "--region=us-central1",
    "--temp_location=gs://b/tmp/temp",
    "--max_num_workers=64",
    "--job_name=prep-gym99",
  ):
    assert word in beam, word
  wheel = flag(beam, "extra_package")
  assert wheel.endswith("-py3-none-any.whl") and "art_jax-" in wheel
  build = [c for c in cmds if c[1:4] == ["-m", "pip", "wheel"]]
  assert len(build) == 1 and "--no-deps" in build[0]
  # gcsfs (gs:// for the prepare job) reaches the workers by a staged
  # requirements file, next to the wheel.
  req = flag(beam, "requirements_file")
  assert os.path.dirname(req) == os.path.dirname(wheel), (req, wheel)
  writes = [c for c in cmds if c[:2] == ["bash", "-c"]]
  assert writes == [["bash", "-c", f"echo gcsfs >{req}"]], writes

  req = sandbox["tmp"] / "requirements.txt"
  req.write_text("art_jax\n")
  setup = sandbox["tmp"] / "setup.py"
  setup.write_text("")
  cmds, _ = dry(
    sandbox,
    "dataflow/prepare",
    *REQUIRED["dataflow/prepare"],
    "PACKAGE=none",
    f"REQUIREMENTS={req}",
    f"SETUP_FILE={setup}",
    "CONTAINER=gcr.io/p/art:1",
    "NO_PUBLIC_IPS=1",
  )
  beam = shlex.split(flag(cmds[-1], "beam_options"))
  assert f"--requirements_file={req}" in beam
  assert f"--setup_file={setup}" in beam
  assert "--sdk_container_image=gcr.io/p/art:1" in beam
  assert "--no_use_public_ips" in beam
  assert not any(w.startswith("--extra_package") for w in beam)
  job = flag(beam, "job_name")
  assert job.startswith("art-jax-prepare-finegym-"), job


def test_dataflow_prepare_needs_gcs_paths(sandbox):
  args = [
    a if not a.startswith("VIDEOS=") else "VIDEOS=/local/videos"
    for a in REQUIRED["dataflow/prepare"]
  ]
  proc = launch(sandbox, "dataflow/prepare", "DRY_RUN=1", *args, check=False)
  assert proc.returncode == 2 and "VIDEOS must be a gs:// path" in proc.stderr
