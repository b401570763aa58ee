"""The response node as its own process: real SmolLM2, real Whisper features, over DDS."""
import numpy as np
import pytest
import torch

from conftest import GOFORWARD, call_service, spin_until
from tinyalign_ros.core.speech.audio import load_audio

pytestmark = [pytest.mark.ros, pytest.mark.real_models]


def features_msg(asr, audio, utterance_id, user_id="alice"):
    from tinyalign_ros.nodes.common import features_to_msg

    return features_to_msg(asr.process(audio), utterance_id, user_id, asr.model_id)


def test_response_node_serves_cascade_then_hot_swaps_projector(ros_node, start_node, tmp_path):
    from tinyalign_ros.core.assistant.checkpoint import Projector, ProjectorMeta, to_bytes
    from tinyalign_ros.core.assistant.llm import llm_id
    from tinyalign_ros.core.assistant.projector import BridgeFormer, ProjectorConfig
    from tinyalign_ros.core.models import resolve_llm
    from tinyalign_ros.core.speech.asr import AsrFrontEnd
    from tinyalign_ros.msg import ProjectorUpdate, Response, SpeechFeatures
    from tinyalign_ros.core.signing import create_key, signature
    from tinyalign_ros.nodes.common import PROJECTOR_QOS, RELIABLE_QOS, update_fields

    responses, partials = [], []
    ros_node.create_subscription(Response, "response", responses.append, RELIABLE_QOS)
    ros_node.create_subscription(Response, "response_partial", partials.append, RELIABLE_QOS)
    feat_pub = ros_node.create_publisher(SpeechFeatures, "speech_features", RELIABLE_QOS)
    update_pub = ros_node.create_publisher(ProjectorUpdate, "projector_updates", PROJECTOR_QOS)

    # no projector at all: the node must still answer (cascade) and say so
    key_file = tmp_path / "update.key"
    key = create_key(key_file)
    node = start_node("response_node", threads=2, projector=str(tmp_path / "none.safetensors"),
                      max_new_tokens=16, update_key_file=str(key_file))
    assert node.wait_for_log("LLM SmolLM2-135M-Instruct:576", timeout=90), node.output()
    assert spin_until(ros_node, lambda: feat_pub.get_subscription_count() > 0, 20, [node])

    asr = AsrFrontEnd(cpu_threads=2)
    good = features_msg(asr, load_audio(GOFORWARD), "utt-1")
    bad_dims = SpeechFeatures(utterance_id="bad-dims", frames=10, dim=384,
                              data=np.zeros(100, np.float32))
    bad_nan = SpeechFeatures(utterance_id="bad-nan", frames=2, dim=2,
                             data=np.array([0, np.nan, 0, 0], np.float32))
    empty = SpeechFeatures(utterance_id="empty")
    for msg in (bad_dims, bad_nan, empty, good):
        feat_pub.publish(msg)
    assert spin_until(ros_node, lambda: len(responses) >= 1, 90, [node]), node.output()
    r = responses[0]
    assert r.utterance_id == "utt-1" and r.mode == "cascade" and r.text.strip()
    assert r.reason == "no projector fits these features"     # auto, and no base projector
    assert "go forward" in r.text.lower()
    assert r.tokens > 0 and r.llm_prefill_time_s > 0 and r.first_token_latency_s > 0
    assert partials and all(p.partial for p in partials)
    out = node.output()
    for uid in ("bad-dims", "bad-nan", "empty"):
        assert f"dropping features '{uid}'" in out, out

    # a projector update for alice arrives, validated no worse than the cascade: in the default
    # mode (auto) her next response is aligned and names its version and the numbers
    torch.manual_seed(0)
    proj = BridgeFormer(ProjectorConfig(asr_dim=384, llm_dim=576))

    def checkpoint(version, aligned_wer, cascade_wer, model=proj):
        meta = ProjectorMeta(asr_model_id=asr.model_id, llm_model_id=llm_id(resolve_llm()),
                             projector=model.config.to_dict(), version=version,
                             metrics={"validation_aligned_wer": aligned_wer,
                                      "validation_cascade_wer": cascade_wer,
                                      "validation_utterances": 10})
        return to_bytes(Projector(model, meta))

    def signed(update, with_key=key):
        update.header.stamp = ros_node.get_clock().now().to_msg()
        update.signature = signature(with_key, *update_fields(update))
        return update

    # a hostile peer on the domain: unsigned, or signed with another key -> ignored
    forged = ProjectorUpdate(user_id="alice", version="forged")
    forged.checkpoint = checkpoint("forged", 0.0, 1.0)
    update_pub.publish(forged)
    assert node.wait_for_log("ignoring unsigned or forged projector update for 'alice' "
                             "(version 'forged')", 30), node.output()
    update_pub.publish(signed(forged, with_key=b"k" * 32))
    update = ProjectorUpdate(user_id="alice", version="v-test-1")
    update.checkpoint = checkpoint("v-test-1", 0.10, 0.20)
    update_pub.publish(signed(update))
    assert node.wait_for_log("projector v-test-1 now serves user 'alice'", 30), node.output()
    assert node.output().count("ignoring unsigned or forged") == 2     # both forgeries
    assert "projector forged now serves" not in node.output()
    update_pub.publish(update)   # the same message again (the latched history re-sent): dropped
    # a corrupt update is refused, and the node keeps its projector
    broken = ProjectorUpdate(user_id="alice", version="broken")
    broken.checkpoint = b"not a checkpoint"
    update_pub.publish(signed(broken))
    assert node.wait_for_log("ignoring projector update", 30), node.output()

    feat_pub.publish(features_msg(asr, load_audio(GOFORWARD), "utt-2"))
    feat_pub.publish(features_msg(asr, load_audio(GOFORWARD), "utt-3", user_id="bob"))
    assert spin_until(ros_node, lambda: len(responses) >= 3, 120, [node]), node.output()
    by_id = {r.utterance_id: r for r in responses}
    assert by_id["utt-2"].mode == "aligned" and by_id["utt-2"].projector_version == "v-test-1"
    assert "aligned WER 10.0% vs cascade 20.0% on 10" in by_id["utt-2"].reason
    assert by_id["utt-3"].mode == "cascade"          # bob has no projector, and there is no base
    assert node.output().count("projector v-test-1 now serves user 'alice'") == 1

    # a newer projector that loses to the cascade: auto answers alice by the cascade and says
    # why; an older signed update played back afterwards is refused. It is a gated one whose
    # gate shuts at any confidence (a base calibrated to let no audio in)
    newer = ProjectorUpdate(user_id="alice", version="v-test-2")
    gated = BridgeFormer(ProjectorConfig(asr_dim=384, llm_dim=576, gate="scalar",
                                         gate_max_confidence=0.0))
    newer.checkpoint = checkpoint("v-test-2", 0.30, 0.20, gated)
    update_pub.publish(signed(newer))
    assert node.wait_for_log("projector v-test-2 now serves user 'alice'", 30), node.output()
    update_pub.publish(update)
    assert node.wait_for_log("ignoring a replayed projector update for 'alice'", 30)
    feat_pub.publish(features_msg(asr, load_audio(GOFORWARD), "utt-4"))
    assert spin_until(ros_node, lambda: any(r.utterance_id == "utt-4" for r in responses),
                      60, [node]), node.output()
    lost = {r.utterance_id: r for r in responses}["utt-4"]
    assert lost.mode == "cascade" and lost.projector_version == ""
    assert "v-test-2 loses: aligned WER 30.0% vs cascade 20.0%" in lost.reason

    # mode aligned serves her projector regardless: here its shut gate, so the cascade's reply
    assert all(r.successful for r in set_parameters(ros_node, "/response", [node],
                                                    mode="aligned"))
    feat_pub.publish(features_msg(asr, load_audio(GOFORWARD), "utt-5"))
    assert spin_until(ros_node, lambda: any(r.utterance_id == "utt-5" for r in responses),
                      60, [node]), node.output()
    forced = {r.utterance_id: r for r in responses}["utt-5"]
    assert forced.mode == "aligned" and forced.projector_version == "v-test-2"
    assert "audio gate shut (ASR confidence" in forced.reason and forced.projector_time_s == 0
    assert forced.text == r.text     # utt-1's cascade reply, the same recording

    # mode both: that shut-gate reply also answers for the cascade (one generation, two
    # Responses), so the next utterance does not wait for a second identical one
    assert all(r.successful for r in set_parameters(ros_node, "/response", [node], mode="both"))
    feat_pub.publish(features_msg(asr, load_audio(GOFORWARD), "utt-both"))
    assert spin_until(ros_node, lambda: sum(r.utterance_id == "utt-both" for r in responses) >= 2,
                      60, [node]), node.output()
    both = {r.mode: r for r in responses if r.utterance_id == "utt-both"}
    assert set(both) == {"aligned", "cascade"} and both["cascade"].text == r.text
    assert "the same generation as the aligned reply" in both["cascade"].reason
    assert both["cascade"].projector_version == "" and both["cascade"].tokens == forced.tokens
    assert node.wait_for_log("cascade: the aligned reply (gate shut)", 10), node.output()

    # features of another encoder variant of the same width (ct2 instead of var): alice's
    # projector must not read them; the node answers in cascade mode and says why
    foreign = features_msg(asr, load_audio(GOFORWARD), "utt-foreign")
    foreign.asr_model_id = "whisper-tiny.en:384"
    feat_pub.publish(foreign)
    assert spin_until(ros_node, lambda: any(r.utterance_id == "utt-foreign" for r in responses),
                      60, [node]), node.output()
    assert {r.utterance_id: r for r in responses}["utt-foreign"].mode == "cascade"
    assert "answering in cascade mode" in node.output() and "asr_model_id differs" in node.output()

    # live parameters take effect on the next request: mode and response length
    results = set_parameters(ros_node, "/response", [node], mode="cascade", max_new_tokens=2)
    assert all(r.successful for r in results)
    feat_pub.publish(features_msg(asr, load_audio(GOFORWARD), "utt-live"))
    assert spin_until(ros_node, lambda: any(r.utterance_id == "utt-live" for r in responses),
                      60, [node]), node.output()
    live = {r.utterance_id: r for r in responses}["utt-live"]
    assert live.mode == "cascade" and live.projector_version == "" and live.tokens <= 2
    assert node.poll() is None


def set_parameters(ros_node, fqn, procs, **values):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    client = ros_node.create_client(SetParameters, f"{fqn}/set_parameters")
    request = SetParameters.Request(
        parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    return call_service(ros_node, client, request, procs, 20, resend_after=5).results
