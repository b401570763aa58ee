"""The node graph in one place: which nodes the launch file starts, and which launch arguments
set which node parameters. Read by launch/tinyalign.launch.py and by the tests; the parameters
themselves live in config/tinyalign.yaml and are declared by each node module's PARAMETERS.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeSpec:
    name: str          # ROS node name, and its section in config/tinyalign.yaml
    executable: str    # in lib/tinyalign_ros, made from tinyalign_ros/nodes/<executable>.py
    description: str

    @property
    def module(self) -> str:
        return f"tinyalign_ros.nodes.{self.executable}"


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str
    sets: dict = field(default_factory=dict)  # node name -> parameter name


NODES = (
    NodeSpec("capture", "capture_node", "microphone or file audio -> AudioChunk stream"),
    NodeSpec("asr", "asr_node", "VAD utterances -> Whisper encoder features + transcript"),
    NodeSpec("response", "response_node", "features -> projector -> frozen LLM -> Response"),
    NodeSpec("adaptation", "adaptation_node", "utterance log, corrections, per-user retraining"),
)

LAUNCH_ARGUMENTS = (
    LaunchArgument("user_id", "default", "who is speaking; tags every utterance",
                   {"asr": "user_id"}),
    LaunchArgument("audio_source", "microphone", "'microphone' or 'file'",
                   {"capture": "source"}),
    LaunchArgument("audio_file", "", "file, folder or glob of audio files when audio_source:=file",
                   {"capture": "file_path"}),
    LaunchArgument("audio_device", "", "microphone index or name substring ('' = default)",
                   {"capture": "device"}),
    LaunchArgument("whisper_model", "", "local CTranslate2 Whisper folder ('' = bundled tiny.en)",
                   {"asr": "whisper_model"}),
    LaunchArgument("llm_model", "", "local transformers LLM folder ('' = prepared SmolLM2-135M)",
                   {"response": "llm_model", "adaptation": "llm_model"}),
    LaunchArgument("projector", "", "base projector checkpoint ('' = the one shipped)",
                   {"response": "projector", "adaptation": "projector"}),
    LaunchArgument("mode", "aligned", "response mode: aligned, cascade or both",
                   {"response": "mode"}),
    LaunchArgument("device", "auto", "model device: auto, cpu or cuda",
                   {"asr": "device", "response": "device", "adaptation": "device"}),
)

#: all of NODES in one process sharing one LLM (launch argument single_process:=true)
SINGLE_PROCESS_EXECUTABLE = "graph_node"

CONFIG_FILE = "tinyalign.yaml"   # in config/ (source) and share/tinyalign_ros/config (installed)


def node(name: str) -> NodeSpec:
    for spec in NODES:
        if spec.name == name:
            return spec
    raise KeyError(f"no node named {name!r}; nodes: {[n.name for n in NODES]}")
