#!/usr/bin/env bash
# colcon build of the package in the repository root, against ROS 2 from the venv's PyPI wheels
# (or against a sourced apt ROS 2 when ROS_DISTRO is set and no venv exists).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/common.sh"
cd "$ROOT"
if [[ -x "$TINYALIGN_VENV/bin/python" ]]; then
  source "$TINYALIGN_VENV/bin/activate"
  # The wheels keep their CMake configs and ament index under <venv>/share.
  export AMENT_PREFIX_PATH="$TINYALIGN_VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$TINYALIGN_VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  PYEXE="$TINYALIGN_VENV/bin/python"
else
  PYEXE="$(command -v python3)"
fi
colcon build --base-paths "$ROOT" --build-base "$ROOT/build" --install-base "$ROOT/install" \
  --event-handlers console_cohesion- summary+ \
  --cmake-args -DPython3_EXECUTABLE="$PYEXE" -DBUILD_TESTING=OFF 2>&1 \
  | grep -v "doesn't contain any 'local_setup" || { echo "colcon build failed (see $ROOT/log/latest_build)"; exit 1; }
test -f "$ROOT/install/setup.bash"
