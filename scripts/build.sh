#!/usr/bin/env bash
# colcon build of the package in the repository root, against ROS 2 from the venv's PyPI wheels
# (or against a sourced apt ROS 2 when ROS_DISTRO is set and no venv exists).
# TINYALIGN_ROS_DISTRO=jazzy: the Jazzy venv, into ./build-jazzy ./install-jazzy ./log-jazzy.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/common.sh"
cd "$ROOT"
BUILD="$ROOT/build$ta_suffix" INSTALL="$ROOT/install$ta_suffix" LOG="$ROOT/log$ta_suffix"
# Never build against this checkout's other venv or install (a shell that sourced the other one).
ta_scrub_paths "$ROOT"
if [[ -x "$ta_venv/bin/python" ]]; then
  source "$ta_venv/bin/activate"
  # The wheels keep their CMake configs and ament index under <venv>/share.
  export AMENT_PREFIX_PATH="$ta_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$ta_venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  PYEXE="$ta_venv/bin/python"
else
  PYEXE="$(command -v python3)"
fi
colcon --log-base "$LOG" build --base-paths "$ROOT" --build-base "$BUILD" --install-base "$INSTALL" \
  --event-handlers console_cohesion- summary+ \
  --cmake-args -DPython3_EXECUTABLE="$PYEXE" -DBUILD_TESTING=OFF 2>&1 \
  | grep -v "doesn't contain any 'local_setup" || { echo "colcon build failed (see $LOG/latest_build)"; exit 1; }
test -f "$INSTALL/setup.bash"
