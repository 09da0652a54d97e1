#!/usr/bin/env bash
# GPU readiness check of flashsim-coffea: one short run (a few minutes) on a machine with an
# NVIDIA GPU, no network needed. Prints progress on stderr and ONE JSON object on stdout:
#
#   {"status": "ok"|"no-cuda"|"failed", "nvidia_smi": {"name", "memory_total", "driver"},
#    "python": .., "torch": .., "cuda_device": ..,
#    "cpu_vs_gpu_samples": {"objects", "median_rel_diff", "max_abs_diff_over_std"},   # same model, same noise
#    "bench_flows": {... bench_flows.py --device cuda over --block-sizes ...},
#    "processor": {"<input>": {"cpu": {"seconds", "events_per_s"}, "cuda": {...}, "speedup"}},
#    "failed_steps": [...]}
#
# (also written to $OUT/gpu_check.json when OUT is set; the processor outputs go to $OUT too).
#
#   bash benchmarks/gpu_check.sh             # the check; exit 0 also when there is no CUDA device
#   bash benchmarks/gpu_check.sh --prepare   # on a CPU machine with the project's .venv: gather
#                                            # the project's dependencies for a bare GPU image
#
# Without a CUDA device (or with a CPU-only torch) it prints {"status": "no-cuda", "reason": ..}
# and exits 0 within seconds. A step that fails is listed in "failed_steps" (exit status 1).
#
# Python: $FLASHSIM_PYTHON, else the first of .venv/bin/python, python3, python whose torch
# sees a CUDA device. For a GPU machine whose python (3.12) has a CUDA torch but not
# coffea/awkward/uproot/nflows... and no network: `--prepare`, run beforehand on a machine with
# the project's .venv, puts those (pure-Python packages copied from the venv, compiled ones as
# cp312 wheels of the same versions) under benchmarks/data/gpu_site (git-ignored, ~20-30 MiB);
# copy that folder to the GPU machine's checkout and run `bash benchmarks/gpu_check.sh` there.
# Only the modules its python lacks are taken from it (a link farm in a temp dir), so the
# image's own torch/numpy/scipy stay in use.
#
# Environment: GPU_CHECK_EVENTS (events of the larger processor input, default 50000; 0 skips
# it), GPU_CHECK_BLOCK_SIZES (default 65536,262144,1048576), GPU_CHECK_OBJECTS (default 1e6).
# GPU_CHECK_DEVICE=cpu rehearses every step on a CPU machine ("cuda" results are then CPU ones).
# --prepare: GPU_SITE (folder, default benchmarks/data/gpu_site), GPU_SITE_PYTHON (default 3.12).
set -u
DEV="${GPU_CHECK_DEVICE:-cuda}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
SITE="${GPU_SITE:-$ROOT/benchmarks/data/gpu_site}"
log() { echo "gpu_check: $*" >&2; }

# ---------------------------------------------------------------------------------------------
if [ "${1:-}" = "--prepare" ]; then
  PY="${FLASHSIM_PYTHON:-$ROOT/.venv/bin/python}"
  [ -x "$PY" ] || PY=python3
  log "gathering the dependencies of 'flashsim run --mode flashsim' and bench_flows.py with $PY into $SITE"
  rm -rf "$SITE" && mkdir -p "$SITE/pure" "$SITE/wheels" || exit 1
  "$PY" - "$SITE" <<'EOF' || exit 1
import importlib.metadata as md, json, os, shutil, subprocess, sys, tempfile
site = sys.argv[1]
# the distributions imported by a real flashsim processor run (CPU) and the flow benchmark
probe = r'''
import atexit, json, sys, importlib.metadata as md
def dump():
    pd = md.packages_distributions()
    json.dump(sorted({d for m in list(sys.modules) for d in pd.get(m.split(".")[0], [])}), open(sys.argv[1], "w"))
atexit.register(dump)
sys.path[:0] = [".", "benchmarks"]
import bench_flows, machine, bench_processor, flashsim_coffea.nanoaod.io
from flashsim_coffea.objects import get_spec
bench_flows.conditioning(get_spec("jets"), 1000)
from flashsim_coffea.cli import main
main(["run", "flashsim_coffea/samples/vbf_hmm.root", "--mode", "flashsim", "-o", sys.argv[2]])
'''
with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "dists.json")
    subprocess.run([sys.executable, "-c", probe, out, os.path.join(tmp, "x.coffea")], check=True,
                   stdout=subprocess.DEVNULL)
    dists = json.load(open(out))
# provided by the GPU image (compiled; KINDS.md's package list) or not needed there
image = {"torch", "numpy", "scipy", "pandas", "pyarrow", "matplotlib", "numba", "llvmlite", "pillow", "kiwisolver",
         "fonttools", "contourpy", "psutil", "pyyaml", "charset-normalizer", "xxhash", "markupsafe", "flashsim-coffea",
         "setuptools", "pip", "wheel", "sympy", "mpmath"}
wheels, copied = [], []
for name in dists:
    if name.lower() in image or name.lower().startswith(("nvidia", "triton")):
        continue
    dist = md.distribution(name)
    files = [f for f in (dist.files or []) if "__pycache__" not in str(f)]
    if any(str(f).endswith((".so", ".pyd")) or ".so." in str(f) for f in files):
        wheels.append(f"{dist.metadata['Name']}=={dist.version}")
        continue
    for f in files:
        src = f.locate()
        if str(f).startswith(("..", "/")) or not os.path.isfile(src) or str(f).endswith(".pth"):
            continue
        dst = os.path.join(site, "pure", str(f))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    copied.append(f"{dist.metadata['Name']}=={dist.version}")
plat = []
for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"):
    plat += ["--platform", p]
if wheels:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
                    os.environ.get("GPU_SITE_PYTHON", "3.12"), "--implementation", "cp", *plat, "-d", os.path.join(site, "wheels"), *wheels], check=True)
json.dump({"copied": copied, "wheels": wheels}, open(os.path.join(site, "manifest.json"), "w"), indent=1)
print(f"gpu_check: copied {len(copied)} pure-Python distributions, downloaded {len(wheels)} wheels: {', '.join(wheels)}",
      file=sys.stderr)
EOF
  log "$(du -sh "$SITE" | cut -f1) in $SITE; carry it: run(..., carry=[\"benchmarks/data/gpu_site\"])"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
RES="${OUT:-$WORK}"
mkdir -p "$RES"

emit() {  # print the result (and keep a copy under $OUT)
  cat "$WORK/result.json"
  [ -n "${OUT:-}" ] && cp "$WORK/result.json" "$OUT/gpu_check.json"
}

# nvidia-smi (optional: the check relies on torch)
SMI="{}"
if command -v nvidia-smi >/dev/null 2>&1; then
  line="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
  if [ -n "$line" ]; then
    IFS=',' read -r g_name g_mem g_drv <<<"$line"
    SMI="{\"name\": \"$(echo $g_name)\", \"memory_total\": \"$(echo $g_mem)\", \"driver\": \"$(echo $g_drv)\"}"
  fi
fi

# a python whose torch sees a CUDA device
PY=""
for cand in ${FLASHSIM_PYTHON:-} "$ROOT/.venv/bin/python" python3 python; do
  command -v "$cand" >/dev/null 2>&1 || [ -x "$cand" ] || continue
  if timeout 120 "$cand" -c "import torch, sys; sys.exit(0 if '$DEV' == 'cpu' or torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    PY="$cand"; break
  fi
done
if [ -z "$PY" ]; then
  torch_seen="$( { "$ROOT/.venv/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null \
                   || python3 -c 'import torch; print(torch.__version__)' 2>/dev/null; } | head -1)"
  reason="no CUDA device: no python here has a torch that sees a GPU (torch ${torch_seen:-not found}"
  [ "$SMI" = "{}" ] && reason="$reason; nvidia-smi absent or silent" || reason="$reason; nvidia-smi sees a GPU: a CPU-only torch build?"
  reason="$reason); nothing to check"
  log "$reason"
  printf '{"status": "no-cuda", "reason": "%s", "nvidia_smi": %s}\n' "$reason" "$SMI" >"$WORK/result.json"
  emit
  exit 0
fi
log "python: $PY"

# the project's dependencies: the image's own where it has them, benchmarks/data/gpu_site for the rest
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -d "$SITE" ]; then
  if ls "$SITE"/wheels/*.whl >/dev/null 2>&1; then  # a wheel is a zip of site-packages entries: unpack it
    "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
      "$WORK/whl" "$SITE"/wheels/*.whl || log "unpacking the wheels of $SITE failed"
  fi
  "$PY" - "$WORK/farm" "$SITE/pure" "$WORK/whl" <<'EOF' >&2
import importlib.metadata as md, importlib.util, os, sys
farm, sources = sys.argv[1], sys.argv[2:]
os.makedirs(farm, exist_ok=True)
have = {d.metadata["Name"].lower().replace("_", "-") for d in md.distributions() if d.metadata["Name"]}
linked = []
for src in sources:
    if not os.path.isdir(src):
        continue
    for entry in sorted(os.listdir(src)):
        path, dst = os.path.join(src, entry), os.path.join(farm, entry)
        if os.path.exists(dst) or entry in ("bin", "__pycache__"):
            continue
        if entry.endswith((".dist-info", ".egg-info")):
            name = entry.split("-")[0].lower().replace("_", "-")
            if name not in have:
                os.symlink(path, dst)
            continue
        mod = entry[:-3] if entry.endswith(".py") else entry.split(".")[0]
        if mod.isidentifier() and importlib.util.find_spec(mod) is None:
            os.symlink(path, dst)
            linked.append(mod)
print(f"gpu_check: taken from gpu_site: {', '.join(linked) or 'nothing'}", file=sys.stderr)
EOF
  export PYTHONPATH="$PYTHONPATH:$WORK/farm"
fi
if ! missing="$("$PY" -c 'import awkward, uproot, coffea, nflows, hist, vector, flashsim_coffea.inject, flashsim_coffea.processors' 2>&1)"; then
  reason="the project does not import with $PY: $(echo "$missing" | tail -1); run 'bash benchmarks/gpu_check.sh --prepare' on the development machine and carry benchmarks/data/gpu_site"
  log "$reason"
  "$PY" -c 'import json, sys; print(json.dumps({"status": "failed", "reason": sys.argv[1], "nvidia_smi": json.loads(sys.argv[2]), "failed_steps": ["imports"]}))' \
    "$reason" "$SMI" >"$WORK/result.json"
  emit
  exit 1
fi

FAILED=()
step() {  # step NAME TIMEOUT CMD...: stdout to $WORK/NAME.out, stderr shown
  local name="$1" limit="$2"; shift 2
  log "step $name: $*"
  local t0=$SECONDS
  if ! timeout "$limit" "$@" >"$WORK/$name.out"; then FAILED+=("$name"); log "step $name FAILED"; fi
  echo $((SECONDS - t0)) >"$WORK/$name.seconds"
}

# 1. same model, same keys: CPU and GPU samples agree to float32 rounding
step compare 300 "$PY" - "$DEV" <<'EOF'
import json, sys, warnings
import numpy as np, torch
sys.path.insert(0, "benchmarks")
from bench_flows import conditioning
from flashsim_coffea.flows.sampler import FlowModel, shipped_model_path
warnings.simplefilter("ignore")
dev = sys.argv[1]
out = {"cuda_device": torch.cuda.get_device_name() if dev == "cuda" else "none (rehearsal on cpu)",
       "torch": torch.__version__, "python": sys.version.split()[0]}
for name in ("jets", "muons"):
    cpu = FlowModel.load(shipped_model_path(name))
    cond, keys = conditioning(cpu.spec, 10_000)
    a = cpu.sample(cond, keys, fold=0)
    b = FlowModel.load(shipped_model_path(name)).to(dev).sample(cond, keys, fold=0)
    rel = [np.abs(a[k] - b[k]) / (np.std(a[k]) or 1.0) for k in a]
    out[name] = {"objects": len(cond), "median_diff_over_std": float(np.median(np.concatenate(rel))),
                 "max_diff_over_std": float(max(r.max() for r in rel)),
                 "fraction_identical": float(np.mean(np.concatenate([a[k] == b[k] for k in a])))}
print(json.dumps(out))
EOF

# 2. flow sampling throughput on the GPU over several block sizes (float32 and bfloat16)
if [ "$DEV" = cpu ]; then bench_args=(--device cpu --sizes 1e4 --precisions float32); else bench_args=(--device cuda); fi
step bench_flows 420 "$PY" benchmarks/bench_flows.py "${bench_args[@]}" --repeat 1 \
  --block-sizes "${GPU_CHECK_BLOCK_SIZES:-65536,262144,1048576}" --gpu-objects "${GPU_CHECK_OBJECTS:-1e6}"

# 3. the processor, flashsim mode, CPU vs GPU: the bundled sample, then a larger input
run_proc() {  # run_proc LABEL INPUT DEVICE
  local tag="$3"; [ "$3" = cpu ] && [ -e "$WORK/proc_$1_cpu.out" ] && tag=cuda  # rehearsal: the second run stands for cuda
  step "proc_$1_$tag" 420 "$PY" -m flashsim_coffea.cli run "$2" --mode flashsim --device "$3" -o "$RES/$1_$tag.coffea"
}
run_proc bundled flashsim_coffea/samples/vbf_hmm.root cpu
run_proc bundled flashsim_coffea/samples/vbf_hmm.root "$DEV"
EVENTS="${GPU_CHECK_EVENTS:-50000}"
if [ "$EVENTS" -gt 0 ]; then
  big="$WORK/vbf_hmm_$EVENTS.root"
  step build_input 300 "$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; \
from bench_processor import build_input; build_input(Path('flashsim_coffea/samples/vbf_hmm.root'), $EVENTS, Path('$big'))"
  run_proc "events$EVENTS" "$big" cpu
  run_proc "events$EVENTS" "$big" "$DEV"
fi

# 4. one JSON object
"$PY" - "$WORK" "$SMI" "${FAILED[*]:-}" >"$WORK/result.json" <<'EOF'
import json, os, re, sys
work, smi, failed = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3].split()
def read(name):
    try:
        return open(os.path.join(work, name)).read()
    except OSError:
        return ""
def last_json(text):
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None
res = {"status": "failed" if failed else "ok", "nvidia_smi": smi}
cmp = last_json(read("compare.out")) or {}
res.update({k: cmp.pop(k) for k in ("python", "torch", "cuda_device") if k in cmp})
res["cpu_vs_gpu_samples"] = cmp
res["bench_flows"] = last_json(read("bench_flows.out"))
proc = {}
for f in sorted(os.listdir(work)):
    m = re.fullmatch(r"proc_(.+)_(cpu|cuda)\.out", f)
    if not m:
        continue
    text = read(f)
    rate = re.search(r"(\d+) events in ([\d.]+) s \((\d+) events/s", text)
    entry = {"wall_seconds_with_startup": int(read(f[:-4] + ".seconds") or 0)}
    if rate:
        entry.update(events=int(rate.group(1)), seconds=float(rate.group(2)), events_per_s=int(rate.group(3)))
    proc.setdefault(m.group(1), {})[m.group(2)] = entry
for label, e in proc.items():
    if e.get("cpu", {}).get("seconds") and e.get("cuda", {}).get("seconds"):
        e["speedup_cuda_vs_cpu"] = round(e["cpu"]["seconds"] / e["cuda"]["seconds"], 2)
res["processor"] = proc
res["failed_steps"] = failed
print(json.dumps(res))
EOF
emit
[ ${#FAILED[@]} -eq 0 ]
