# Source this to use tinyalign_ros from this checkout: the venv, ROS 2 from its wheels, and the
# colcon install of the package.   source scripts/env.sh
# ROS 2 Jazzy instead of Kilted (after make setup-jazzy):   TINYALIGN_ROS_DISTRO=jazzy source scripts/env.sh
# Sourcing one distribution drops the other's venv and install of this checkout from the paths.
_ta_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if source "$_ta_root/scripts/common.sh"; then
  ta_scrub_paths "$_ta_root"
  if [[ -x "$ta_venv/bin/python" ]]; then
    source "$ta_venv/bin/activate"
    export AMENT_PREFIX_PATH="$ta_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  fi
  # The colcon install the tests use (test/conftest.py).
  export TINYALIGN_INSTALL="$_ta_root/install$ta_suffix"
  if [[ -f "$TINYALIGN_INSTALL/setup.bash" ]]; then
    source "$TINYALIGN_INSTALL/setup.bash"
  else
    echo "tinyalign_ros: $TINYALIGN_INSTALL is missing; run make setup$ta_suffix" >&2
  fi
fi
unset _ta_root ta_distro ta_venv ta_suffix
unset -f ta_scrub_paths
