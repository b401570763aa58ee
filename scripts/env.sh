# Source this to use tinyalign_ros from this checkout: the venv, ROS 2 from its wheels, and the
# colcon install of the package.   source scripts/env.sh
_ta_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$_ta_root/scripts/common.sh"
if [[ -x "$TINYALIGN_VENV/bin/python" ]]; then
  source "$TINYALIGN_VENV/bin/activate"
  case ":${AMENT_PREFIX_PATH:-}:" in *":$TINYALIGN_VENV:"*) ;; *)
    export AMENT_PREFIX_PATH="$TINYALIGN_VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}";; esac
fi
if [[ -f "$_ta_root/install/setup.bash" ]]; then
  source "$_ta_root/install/setup.bash"
else
  echo "tinyalign_ros: $_ta_root/install is missing; run make setup" >&2
fi
unset _ta_root
