"""mode auto (core.assistant.routing): the aligned path serves only with proof that it is no
worse than the cascade for that user."""
import torch

from tinyalign_ros.core.assistant.checkpoint import Projector, ProjectorMeta, from_bytes, to_bytes
from tinyalign_ros.core.assistant.projector import BridgeFormer, ProjectorConfig
from tinyalign_ros.core.assistant.routing import route


def projector(version, **metrics):
    torch.manual_seed(0)
    model = BridgeFormer(ProjectorConfig(asr_dim=16, llm_dim=32, layers=1, heads=2,
                                         num_tokens=8))
    meta = ProjectorMeta(asr_model_id="asr:16", llm_model_id="llm:32",
                         projector=model.config.to_dict(), version=version, metrics=metrics)
    # through bytes: what the response node reads is what the adaptation node wrote
    return from_bytes(to_bytes(Projector(model, meta)))


def test_aligned_only_where_validated_no_worse_than_the_cascade():
    wins = route(projector("v-win", validation_aligned_wer=0.12, validation_cascade_wer=0.25,
                           validation_utterances=10))
    assert wins.path == "aligned"
    assert wins.reason == ("projector v-win: aligned WER 12.0% vs cascade 25.0% on 10 held-out "
                           "utterances")
    tie = route(projector("v-tie", validation_aligned_wer=0.25, validation_cascade_wer=0.25,
                          validation_utterances=10))
    assert tie.path == "aligned"
    loses = route(projector("v-lose", validation_aligned_wer=0.26, validation_cascade_wer=0.25,
                            validation_utterances=10))
    assert loses.path == "cascade" and loses.reason.startswith("projector v-lose loses:")


def test_no_numbers_no_projector_means_cascade():
    unproven = route(projector("v-old", heldout_wer_aligned=0.9))   # numbers, but no cascade
    assert unproven.path == "cascade" and "not validated against the cascade" in unproven.reason
    assert route(None).path == "cascade"
