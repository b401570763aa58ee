# Shared settings of the scripts (sourced, not run).
#
# TINYALIGN_ROS_DISTRO picks the ROS 2 distribution from PyPI wheels:
#   kilted (default): requirements.txt, venv $TINYALIGN_VENV, ./build ./install ./log
#   jazzy (LTS):      requirements-jazzy.txt, venv $TINYALIGN_VENV_JAZZY, ./build-jazzy
#                     ./install-jazzy ./log-jazzy
# Both share $TINYALIGN_HOME (models, user data).
export TINYALIGN_HOME="${TINYALIGN_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/tinyalign_ros}"
export TINYALIGN_VENV="${TINYALIGN_VENV:-$TINYALIGN_HOME/venv}"
export TINYALIGN_VENV_JAZZY="${TINYALIGN_VENV_JAZZY:-$TINYALIGN_HOME/venv-jazzy}"

# The picked distribution's venv and folder suffix (plain variables; env.sh unsets them again).
ta_distro="${TINYALIGN_ROS_DISTRO:-kilted}"
case "$ta_distro" in
  kilted) ta_venv="$TINYALIGN_VENV"; ta_suffix="" ;;
  jazzy)  ta_venv="$TINYALIGN_VENV_JAZZY"; ta_suffix="-jazzy" ;;
  *) echo "tinyalign_ros: TINYALIGN_ROS_DISTRO=$ta_distro: use kilted or jazzy" >&2
     return 1 ;;
esac

# Drops this checkout's venvs and colcon installs, of either distribution, from the path
# variables, so that a shell (or a build) that had one distribution never mixes in the other.
ta_scrub_paths() {  # ta_scrub_paths <repository root>
  local var entry kept parts
  for var in AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH PYTHONPATH LD_LIBRARY_PATH PATH; do
    [[ -n "${!var:-}" ]] || continue
    IFS=: read -ra parts <<< "${!var}"
    kept=""
    for entry in "${parts[@]}"; do
      case "$entry" in
        "$TINYALIGN_VENV" | "$TINYALIGN_VENV"/* | "$TINYALIGN_VENV_JAZZY" | "$TINYALIGN_VENV_JAZZY"/* | \
        "$1"/install | "$1"/install/* | "$1"/install-jazzy | "$1"/install-jazzy/*) ;;
        *) kept="${kept:+$kept:}$entry" ;;
      esac
    done
    if [[ -n "$kept" ]]; then export "$var=$kept"; else unset "$var"; fi
  done
}
