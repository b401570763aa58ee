"""The node graph in one place: which nodes the launch file starts, which settings each node
takes as parameters, and which launch arguments set which node parameters. Read by
launch/tinyalign.launch.py, the nodes and the tests. The settings themselves (names, types,
defaults, descriptions) are fields of the core config dataclasses; config/tinyalign.yaml is
rendered from them (``python -m tinyalign_ros.graph > config/tinyalign.yaml``) and a test keeps
the two equal.
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
                   {"asr": "whisper_model", "adaptation": "whisper_model"}),
    LaunchArgument("beam_size", "5", "Whisper beam size (1 = greedy); the recogniser gate "
                   "decodes with it too",
                   {"asr": "beam_size", "adaptation": "recognizer_beam_size"}),
    LaunchArgument("llm_model", "", "local transformers LLM folder ('' = prepared SmolLM2-135M)",
                   {"response": "llm_model", "adaptation": "llm_model"}),
    LaunchArgument("projector", "", "base projector checkpoint ('' = the one shipped)",
                   {"response": "projector", "adaptation": "projector"}),
    LaunchArgument("mode", "auto", "response mode: auto (aligned only where validated no worse "
                   "than the cascade), aligned, cascade or both",
                   {"response": "mode"}),
    LaunchArgument("device", "auto", "model device: auto, cpu or cuda",
                   {"asr": "device", "response": "device", "adaptation": "device"}),
    LaunchArgument("autostart", "true", "configure and activate the managed nodes at start; "
                   "false: a lifecycle manager drives their transitions",
                   {"asr": "autostart", "response": "autostart", "adaptation": "autostart"}),
)

#: all of NODES in one process sharing one LLM (launch argument single_process:=true)
SINGLE_PROCESS_EXECUTABLE = "graph_node"

CONFIG_FILE = "tinyalign.yaml"   # in config/ (source) and share/tinyalign_ros/config (installed)


def node_settings(name: str | None = None):
    """A node's settings groups (core.settings.Group), or ``{node name: groups}`` for all.
    Each node imports only its own config classes (the capture node stays free of torch), and
    nothing is imported at module level, so the launch file stays light."""
    if name is not None:
        return _SETTINGS[node(name).name]()
    return {spec.name: _SETTINGS[spec.name]() for spec in NODES}


def _capture_settings():
    from .core.settings import Group
    from .core.speech.sources import CaptureConfig

    return (Group(CaptureConfig),)


def _asr_settings():
    from .core.serving import Lifecycle, TranscribeConfig, UpdateAuth
    from .core.settings import Group
    from .core.speech.asr import AsrConfig
    from .core.speech.vad import VadConfig

    return (Group(AsrConfig), Group(VadConfig, prefix="vad_"), Group(TranscribeConfig),
            Group(UpdateAuth), Group(Lifecycle))


def _response_settings():
    from .core.assistant.pipeline import GenerationConfig
    from .core.assistant.prompt import PromptConfig
    from .core.serving import AssistantModels, Lifecycle, ResponseConfig, UpdateAuth
    from .core.settings import Group

    return (Group(AssistantModels), Group(ResponseConfig),
            Group(PromptConfig, ("task", "transcript_hint")), Group(GenerationConfig),
            Group(UpdateAuth), Group(Lifecycle))


def _adaptation_settings():
    from .core.assistant.pipeline import GenerationConfig
    from .core.assistant.prompt import PromptConfig
    from .core.learning.adapt import AdaptConfig
    from .core.learning.store import StoreConfig
    from .core.serving import AssistantModels, LearningConfig, Lifecycle, UpdateAuth
    from .core.settings import Group

    return (Group(StoreConfig), Group(LearningConfig), Group(AssistantModels),
            Group(PromptConfig, ("task", "transcript_hint")), Group(GenerationConfig),
            Group(AdaptConfig), Group(UpdateAuth), Group(Lifecycle))


_SETTINGS = {"capture": _capture_settings, "asr": _asr_settings,
             "response": _response_settings, "adaptation": _adaptation_settings}


def node_parameters(name: str) -> list:
    """Every parameter of one node (core.settings.Parameter: name, default, description)."""
    from .core.settings import parameters

    return parameters(node_settings(name))


YAML_HEADER = """\
# Parameters of every tinyalign_ros node, rendered from the settings dataclasses of
# tinyalign_ros/core (python -m tinyalign_ros.graph > config/tinyalign.yaml; a test keeps them
# equal). Pass an edited copy with
#   ros2 launch tinyalign_ros tinyalign.launch.py params_file:=<your copy>
# Launch arguments (user_id, audio_source, ...) override the matching entries below.
# [live]: `ros2 param set` takes effect on a running node; other parameters are read at start."""


def render_config() -> str:
    from .core.settings import render_yaml

    return render_yaml(node_settings(), YAML_HEADER)


def node(name: str) -> NodeSpec:
    for spec in NODES:
        if spec.name == name:
            return spec
    raise KeyError(f"no node named {name!r}; nodes: {[n.name for n in NODES]}")


if __name__ == "__main__":
    print(render_config(), end="")
