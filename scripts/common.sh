# Shared settings of the scripts (sourced, not run).
export TINYALIGN_HOME="${TINYALIGN_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/tinyalign_ros}"
export TINYALIGN_VENV="${TINYALIGN_VENV:-$TINYALIGN_HOME/venv}"
