"""What the nodes do at run time beyond their models' own settings: who is speaking, how
responses are served, what the adaptation node logs, and whether models load at start.

These are settings like every other (see settings.py): the nodes' parameters, the YAML file and
the launch file derive from these fields.
"""
from __future__ import annotations

from dataclasses import dataclass

from .settings import check_choices, setting

MODES = ("auto", "aligned", "cascade", "both")


@dataclass
class Lifecycle:
    autostart: bool = setting(True, "configure (load the models) and activate at start; false: "
                                    "start unconfigured and let a lifecycle manager (or ros2 "
                                    "lifecycle set) drive the transitions")


@dataclass
class TranscribeConfig:
    """The ASR node at run time."""
    user_id: str = setting("default", "who is speaking; tags every utterance (also set by the "
                                      "set_user topic)", live=True)
    publish_features: bool = setting(True, "publish encoder features (off: transcripts only)",
                                     live=True)
    publish_audio: bool = setting(True, "carry each utterance's audio (int16) in its "
                                        "SpeechFeatures, so the adaptation node can adapt the "
                                        "recogniser to the user (off: features only)", live=True)
    queue_size: int = setting(8, "utterances waiting for ASR before the oldest is dropped")


@dataclass
class AssistantModels:
    """The models behind the response and adaptation nodes (the same for both)."""
    llm_model: str = setting("", "transformers causal-LM folder; '' = the prepared "
                                 "SmolLM2-135M-Instruct")
    projector: str = setting("", "base projector checkpoint; '' = the one shipped with the "
                                 "package")
    device: str = setting("auto", "auto, cpu or cuda (float16 on CUDA)",
                          choices=("auto", "cpu", "cuda"))

    def __post_init__(self):
        check_choices(self)


@dataclass
class UpdateAuth:
    """Projector and recogniser updates are signed by the adaptation node and verified by the
    response node (projectors) and the ASR node (recognisers)."""
    update_key_file: str = setting("", "secret key (hex) that signs / verifies projector_updates "
                                       "and recognizer_updates; "
                                       "'' = $TINYALIGN_HOME/update.key, made by the adaptation "
                                       "node on its first start (copy it to other hosts)")


@dataclass
class ResponseConfig:
    """How the response node answers."""
    mode: str = setting("auto", "auto (per user: aligned only where that user's projector "
                                "was validated no worse than the cascade, else cascade), "
                                "aligned (projector -> LLM), cascade (transcript -> LLM) or "
                                "both (two responses)", live=True, choices=MODES)
    stream_partial: bool = setting(True, "publish partial text on response_partial while "
                                         "generating", live=True)
    dtype: str = setting("auto", "LLM dtype: auto (float16 on CUDA, float32 on CPU)",
                         choices=("auto", "float32", "float16", "bfloat16"))
    int8: bool = setting(False, "int8 dynamic quantization of the LLM (CPU only)")
    threads: int = setting(0, "torch CPU threads; 0 = torch default")
    queue_size: int = setting(4, "utterances waiting for the LLM before the oldest is dropped")

    def __post_init__(self):
        check_choices(self)


@dataclass
class LearningConfig:
    """The adaptation node besides its training recipe (AdaptConfig) and store (StoreConfig)."""
    log_utterances: bool = setting(True, "log every utterance that arrives on speech_features",
                                   live=True)
    train_threads: int = setting(1, "torch threads for training, so it never starves the "
                                    "response node (not applied in the single-process graph)")
    nice: int = setting(10, "process niceness added at start, so training yields the CPU "
                            "(0 = none; not applied in the single-process graph)")
