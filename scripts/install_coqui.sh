#!/usr/bin/env bash
# Install Coqui TTS (PyPI `coqui-tts`) into an existing virtualenv WITHOUT letting pip touch torch.
#
# Usage: scripts/install_coqui.sh VENV_DIR        (idempotent: a second run changes nothing)
# Env:   COQUI_TTS_SPEC  pip spec for coqui-tts (default "coqui-tts==0.28.0", the version verified here)
#        COQUI_ALLOW_UPGRADES=1  let coqui-tts's dependencies upgrade packages already in the venv (never torch)
#
# Why a script and not `pip install coqui-tts[cpu,codec]`:
#   * coqui-tts 0.27+ lists torch/torchaudio only under its `cpu`/`cuda` extras and torchcodec under `codec`;
#     its base Requires-Dist holds only pure dependencies (transformers, librosa, coqpit-config, trainer, ...).
#     So a plain `pip install coqui-tts` never asks for torch; the extras would make pip "fix" torch.
#   * But `import TTS` checks that torchaudio is importable-ish (importlib find_spec) and, from torch 2.9 on,
#     that torchcodec is present too; TTS/tts/models/vits.py and xtts.py `import torchaudio` at module level,
#     and torchaudio >= 2.9 reads audio files (XTTS/voice-cloning reference WAVs) through torchcodec.
#   * PyPI has no torchaudio built for the installed torch when that torch is newer than the last torchaudio
#     (2.11.0): torchaudio 2.9-2.11 on PyPI are CUDA builds (2.11.0+cu130) whose compiled extension needs
#     libc10_cuda.so / libtorch_cuda.so, so `import torchaudio` dies with
#     "OSError: Could not load this library: .../_torchaudio.abi3.so" on a CPU torch. torchaudio's loader
#     (_extension/utils.py:_load_lib) treats a MISSING extension file as optional and everything Coqui
#     inference uses (transforms.Resample, MelSpectrogram, functional.*, load/save via torchcodec) is pure
#     Python. So: install torchaudio --no-deps, and only when its extension cannot load, delete that
#     extension (torchaudio/lib/*.so). Lost: forced_align, RNN-T loss, CTC prefix decoder (training/ASR only).
#   * torchcodec 0.12+ uses torch's stable ABI ("torch >= 2.11" in its compatibility table), and 0.12/0.13
#     are the last PyPI wheels built CPU-only (0.13.0+cpu); 0.14+ on PyPI link CUDA 13 (libnvrtc.so.13) and
#     cannot load on a CPU torch. Checked here: torchcodec 0.13.0 decodes and encodes WAV with torch
#     2.13.0+cpu using the system FFmpeg 5 libraries. Audio I/O on the CPU is all Coqui needs, so the same
#     pick serves a CUDA torch >= 2.11 too. This is a working torchcodec, not a placeholder for the check.
#   * Every torch-family package goes in with --no-deps (torchaudio 2.9/2.10 pin torch==X.Y.Z exactly and
#     pip would otherwise replace the installed torch). Before touching anything, a pip dry run of coqui-tts
#     is checked: it must not install or change torch/torchaudio/torchcodec/torchvision, and it must not
#     change any package already in the venv. At the end the torch version must be the one we started with.
#
# What it changes in a venv with torch 2.13.0+cpu (measured): adds coqui-tts 0.28.0, six and 42 pure
# dependencies (transformers 5.x, coqui-tts-trainer, coqpit-config, matplotlib, tensorboard, ...; no
# upgrade or downgrade of anything already installed), torchaudio 2.11.0 (extension removed) and
# torchcodec 0.13.0. torch stays as it was.
set -euo pipefail

VENV_DIR="${1:-}"
if [[ -z "$VENV_DIR" ]]; then
    echo "usage: $0 VENV_DIR   (a virtualenv that already holds torch)" >&2
    exit 2
fi
PY="$VENV_DIR/bin/python"
COQUI_TTS_SPEC="${COQUI_TTS_SPEC:-coqui-tts==0.28.0}"
# coqui-tts 0.28.0 imports `six` (TTS/tts/utils/text/punctuation.py) without declaring it; it used to arrive
# through python-dateutil, whose 4.x no longer needs it. Without it `from TTS.tts.models.vits import Vits` fails.
EXTRA_SPECS=("six>=1.16")

say() { echo "[install_coqui] $*"; }
die() { echo "[install_coqui] ERROR: $*" >&2; exit 1; }
run() { say "+ $*"; "$@"; }

[[ -x "$PY" ]] || die "no python at $PY; create the venv first (python3.11 -m venv $VENV_DIR)"
PIP=("$PY" -m pip)

TORCH_BEFORE="$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)" \
    || die "torch is not importable in $VENV_DIR; install torch first (scripts/setup.sh), then rerun"
TORCH_CUDA="$("$PY" -c 'import torch; print(torch.version.cuda or "")')"
say "venv: $VENV_DIR  torch: $TORCH_BEFORE  cuda: ${TORCH_CUDA:-none (CPU build)}"

# Pick torchaudio/torchcodec for this torch. Prints "TORCHAUDIO_SPEC TORCHCODEC_SPEC" ("-" = not needed).
read -r TA_SPEC TC_SPEC < <("$PY" - <<'EOF'
import torch
major, minor = (int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
v = (major, minor)
# torchaudio: same minor as torch where PyPI has one; 2.11.0 is the last release, its Python part is
# what Coqui uses (the compiled extension is dropped below if it cannot load).
ta = f"torchaudio=={major}.{minor}.*" if v <= (2, 11) else "torchaudio==2.11.0"
# torchcodec: Coqui requires it only from torch 2.9. 0.9 <-> 2.9, 0.10 <-> 2.10 (exact pairs in its table);
# from 2.11 the stable-ABI build 0.13.0 (last CPU-only PyPI wheel) serves any newer torch.
if v < (2, 9):
    tc = "-"
elif v == (2, 9):
    tc = "torchcodec==0.9.*"
elif v == (2, 10):
    tc = "torchcodec==0.10.*"
else:
    tc = "torchcodec==0.13.0"
print(ta, tc)
EOF
)
say "chosen: $COQUI_TTS_SPEC ${EXTRA_SPECS[*]} (with their pure dependencies), $TA_SPEC --no-deps, ${TC_SPEC/#-/no torchcodec} --no-deps"

# 1. Dry run: coqui-tts's own dependency set must leave torch and everything already installed alone.
REPORT="$(mktemp -t coqui-report.XXXXXX.json)"
trap 'rm -f "$REPORT"' EXIT
run "${PIP[@]}" install --dry-run --quiet --report "$REPORT" "$COQUI_TTS_SPEC" "${EXTRA_SPECS[@]}"
"$PY" - "$REPORT" <<'EOF'
import json, os, sys
from importlib import metadata
report = json.load(open(sys.argv[1]))
installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()}
bad, changed, new = [], [], []
for item in report.get("install", []):
    name = item["metadata"]["name"].lower().replace("_", "-")
    ver = item["metadata"]["version"]
    if name in ("torch", "torchaudio", "torchcodec", "torchvision"):
        bad.append(f"{name} {ver}")
    elif name in installed:
        changed.append(f"{name} {installed[name]} -> {ver}")
    else:
        new.append(f"{name} {ver}")
print(f"[install_coqui] dry run: {len(new)} new packages: {', '.join(new) or '-'}")
if bad:
    sys.exit(f"[install_coqui] ERROR: pip would install/replace {bad}; refusing (it must not touch torch)")
if changed and os.environ.get("COQUI_ALLOW_UPGRADES") != "1":
    sys.exit(f"[install_coqui] ERROR: pip would change packages already installed: {changed}; check they "
             "still suit the rest of the app, then rerun with COQUI_ALLOW_UPGRADES=1")
if changed:
    print(f"[install_coqui] allowed (COQUI_ALLOW_UPGRADES=1): {', '.join(changed)}")
EOF

# 2. The real installs. Torch-family packages with --no-deps so pip cannot pull another torch.
run "${PIP[@]}" install --quiet "$COQUI_TTS_SPEC" "${EXTRA_SPECS[@]}"
run "${PIP[@]}" install --quiet --no-deps "$TA_SPEC"
if [[ "$TC_SPEC" != "-" ]]; then
    run "${PIP[@]}" install --quiet --no-deps "$TC_SPEC"
fi

# 3. torchaudio's compiled extension: keep it when it loads against this torch, else remove it.
TA_LIB="$("$PY" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("torchaudio"); print(pathlib.Path(s.origin).parent / "lib")')"
if ! TA_ERR="$("$PY" -c 'import torchaudio' 2>&1)"; then
    say "torchaudio's compiled extension does not load against torch $TORCH_BEFORE:"
    say "  $(echo "$TA_ERR" | tail -n 1)"
    shopt -s nullglob
    SOS=("$TA_LIB"/*.so)
    shopt -u nullglob
    [[ ${#SOS[@]} -gt 0 ]] || die "import torchaudio fails and there is no extension to remove: $TA_ERR"
    say "removing it (torchaudio treats a missing extension as optional): ${SOS[*]##*/}"
    rm -f -- "${SOS[@]}"
    "$PY" -c 'import torchaudio' || die "import torchaudio still fails after removing its extension"
elif compgen -G "$TA_LIB/*.so" >/dev/null; then
    say "torchaudio imports with its compiled extension; nothing removed"
else
    say "torchaudio imports; its extension was removed by an earlier run (pure-Python torchaudio)"
fi

# 4. Checks: real audio I/O through torchaudio/torchcodec, Coqui's VITS importable, torch untouched.
"$PY" - <<'EOF'
import math, struct, tempfile, wave, pathlib
import torch, torchaudio
from torchaudio._extension import _IS_TORCHAUDIO_EXT_AVAILABLE
with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 22050)))
                               for i in range(22050)))
    try:
        audio, rate = torchaudio.load(str(path))  # torch >= 2.9: decoded by torchcodec (FFmpeg libraries)
    except Exception as e:
        raise SystemExit(f"[install_coqui] ERROR: torchaudio.load failed ({e!r}); torchcodec needs the FFmpeg "
                         "shared libraries: sudo apt-get install ffmpeg") from e
    assert rate == 22050 and audio.shape == (1, 22050), (rate, audio.shape)
    resampled = torchaudio.transforms.Resample(22050, 16000)(audio)
    assert resampled.shape == (1, 16000), resampled.shape
import TTS
from TTS.tts.models.vits import Vits  # noqa: F401  (imports torchaudio at module level)
print(f"[install_coqui] ok: coqui-tts {TTS.__version__}, torchaudio {torchaudio.__version__} "
      f"(extension {'loaded' if _IS_TORCHAUDIO_EXT_AVAILABLE else 'absent'}), audio load/resample work")
EOF

TORCH_AFTER="$("$PY" -c 'import torch; print(torch.__version__)')"
[[ "$TORCH_AFTER" == "$TORCH_BEFORE" ]] || die "torch changed from $TORCH_BEFORE to $TORCH_AFTER; reinstall torch==$TORCH_BEFORE"
say "torch unchanged: $TORCH_AFTER"
say "pip check (informational; problems not caused by this script may show here):"
"${PIP[@]}" check || true
say "done"
