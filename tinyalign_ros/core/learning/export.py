"""`tinyalign export`: a user's log as an MCAP file (ROS 2 / rosbag2 encoding), for inspection
in standard tools (Foxglove, `ros2 bag info`, mcap CLI). Pure Python: no ROS needed.

Topics: /speech_features (tinyalign_ros/msg/SpeechFeatures, one per logged utterance, stamped
with its log time, its audio included when it was logged), /corrections (std_msgs/String, JSON
{utterance_id, text}), /projector_updates (tinyalign_ros/msg/ProjectorUpdate, every projector
version with its bytes) and /recognizer_updates (tinyalign_ros/msg/RecognizerUpdate, every
recogniser adapter version with its bytes).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .store import UtteranceStore

SEPARATOR = "=" * 80
HEADER = "builtin_interfaces/Time stamp\nstring frame_id\n"
TIME = "int32 sec\nuint32 nanosec\n"
METRIC = "string name\nfloat64 value\n"


def msg_dir() -> Path:
    """The package's .msg files: installed share folder, else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        d = Path(get_package_share_directory("tinyalign_ros")) / "msg"
        if d.is_dir():
            return d
    except Exception:  # not installed with colcon: use the source tree
        pass
    return Path(__file__).resolve().parents[2] / "msg"


def msgdef(name: str, deps: dict[str, str]) -> str:
    """ROS 2 message definition text with its dependencies appended, as rosbag2 stores it."""
    text = (msg_dir() / f"{name}.msg").read_text()
    parts = [text]
    for dep, dep_text in deps.items():
        parts.append(f"{SEPARATOR}\nMSG: {dep}\n{dep_text}")
    return "\n".join(parts)


def _stamp(t: float) -> dict:
    return {"sec": int(t), "nanosec": int((t % 1.0) * 1e9)}


def export_user(store: UtteranceStore, user_id: str, out: str | Path) -> dict:
    from mcap_ros2.writer import Writer

    from .store import read_wav

    utterances = store.utterances(user_id)
    projectors = store.projectors(user_id)
    recognizers = store.recognizers(user_id)
    deps = {"std_msgs/Header": HEADER, "builtin_interfaces/Time": TIME}
    counts = {"speech_features": 0, "corrections": 0, "projector_updates": 0,
              "recognizer_updates": 0, "audio": 0}
    with open(out, "wb") as f:
        writer = Writer(f)
        feats_schema = writer.register_msgdef("tinyalign_ros/msg/SpeechFeatures",
                                              msgdef("SpeechFeatures", deps))
        text_schema = writer.register_msgdef("std_msgs/msg/String", "string data\n")
        proj_schema = writer.register_msgdef(
            "tinyalign_ros/msg/ProjectorUpdate",
            msgdef("ProjectorUpdate", {**deps, "tinyalign_ros/Metric": METRIC}))
        rec_schema = writer.register_msgdef(
            "tinyalign_ros/msg/RecognizerUpdate",
            msgdef("RecognizerUpdate", {**deps, "tinyalign_ros/Metric": METRIC}))
        for u in utterances:
            x = u.features()
            t_ns = int(u.created * 1e9)
            audio, rate = (read_wav(u.audio_path) if u.has_audio
                           else (np.zeros(0, np.int16), 0))
            counts["audio"] += int(audio.size > 0)
            writer.write_message("/speech_features", feats_schema, {
                "header": {"stamp": _stamp(u.created), "frame_id": ""},
                "utterance_id": u.utterance_id, "user_id": u.user_id,
                "frames": x.shape[0], "dim": x.shape[1],
                "data": x.reshape(-1).astype(np.float32).tolist(), "transcript": u.transcript,
                "confidence": float(u.confidence), "asr_model_id": u.asr_model_id,
                "audio_duration_s": audio.size / rate if rate else 0.0,
                "speech_end": _stamp(u.created), "asr_time_s": 0.0,
                "audio": audio.tolist(), "audio_sample_rate": int(rate)},
                log_time=t_ns, publish_time=t_ns)
            counts["speech_features"] += 1
            if u.corrected_text is not None:
                writer.write_message("/corrections", text_schema, {"data": json.dumps(
                    {"utterance_id": u.utterance_id, "text": u.corrected_text})},
                    log_time=t_ns, publish_time=t_ns)
                counts["corrections"] += 1
        for p in projectors:
            t_ns = int(p.created * 1e9)
            data = p.path.read_bytes() if p.path.is_file() else b""
            writer.write_message("/projector_updates", proj_schema, {
                "header": {"stamp": _stamp(p.created), "frame_id": ""},
                "user_id": p.user_id, "version": p.version, "parent_version": p.parent_version,
                "path": str(p.path), "checkpoint": data, "signature": b"",
                "metrics": [{"name": k, "value": float(v)} for k, v in p.metrics.items()
                            if isinstance(v, (int, float))]},
                log_time=t_ns, publish_time=t_ns)
            counts["projector_updates"] += 1
        for r in recognizers:
            t_ns = int(r.created * 1e9)
            data = r.path.read_bytes() if r.path.is_file() else b""
            writer.write_message("/recognizer_updates", rec_schema, {
                "header": {"stamp": _stamp(r.created), "frame_id": ""},
                "user_id": r.user_id, "version": r.version, "parent_version": r.parent_version,
                "adapter": data, "signature": b"",
                "metrics": [{"name": k, "value": float(v)} for k, v in r.metrics.items()
                            if isinstance(v, (int, float))]},
                log_time=t_ns, publish_time=t_ns)
            counts["recognizer_updates"] += 1
        writer.finish()
    return counts
