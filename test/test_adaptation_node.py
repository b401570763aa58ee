"""Adaptation over real DDS between real processes: logging, corrections, the Adapt action with
feedback, the projector update reaching the response node, forget and rollback."""
import numpy as np
import pytest
import torch

from conftest import spin_until

pytestmark = [pytest.mark.ros, pytest.mark.real_models]


@pytest.fixture(scope="module")
def carol():
    """12 real utterances of one speaker (Asterisk prompts), with their true text."""
    from tinyalign_ros.core.speech.asr import AsrFrontEnd
    from tinyalign_ros.core.speech.audio import load_audio
    from tinyalign_ros.corpus.corpora import asterisk_examples

    asr = AsrFrontEnd(cpu_threads=2)
    out = []
    for ex in [e for e in asterisk_examples() if 2 <= len(e.text.split()) <= 8][:12]:
        r = asr.process(load_audio(ex.audio))
        out.append((ex.id, ex.text, r))
    return asr, out


def base_projector(path, asr_model_id):
    from tinyalign_ros.core.assistant.checkpoint import ProjectorMeta, save_checkpoint
    from tinyalign_ros.core.assistant.llm import llm_id
    from tinyalign_ros.core.models import resolve_llm
    from tinyalign_ros.core.assistant.projector import BridgeFormer, ProjectorConfig

    torch.manual_seed(0)
    proj = BridgeFormer(ProjectorConfig(layers=1))
    meta = ProjectorMeta(asr_model_id=asr_model_id, llm_model_id=llm_id(resolve_llm()),
                         projector=proj.config.to_dict(), version="base-test")
    return save_checkpoint(proj, meta, path)


def call(node, client, request, procs, timeout=30):
    assert spin_until(node, client.service_is_ready, timeout, procs), client.srv_name
    future = client.call_async(request)
    assert spin_until(node, future.done, timeout, procs)
    return future.result()


def test_adapt_publishes_a_projector_the_response_node_serves(ros_node, start_node, tmp_path,
                                                              carol):
    from rclpy.action import ActionClient

    from tinyalign_ros.action import Adapt as AdaptAction
    from tinyalign_ros.msg import ProjectorUpdate, Response, SpeechFeatures
    from tinyalign_ros.nodes.common import PROJECTOR_QOS, RELIABLE_QOS
    from tinyalign_ros.srv import Adapt, CorrectTranscript, ForgetUser, Rollback

    asr, utterances = carol
    base = base_projector(tmp_path / "base.safetensors", asr.model_id)
    updates, responses = [], []
    ros_node.create_subscription(ProjectorUpdate, "projector_updates", updates.append,
                                 PROJECTOR_QOS)
    ros_node.create_subscription(Response, "response", responses.append, RELIABLE_QOS)
    feat_pub = ros_node.create_publisher(SpeechFeatures, "speech_features", RELIABLE_QOS)

    adapt_node = start_node("adaptation_node", projector=str(base),
                            store_dir=str(tmp_path / "store"), epochs=4, min_utterances=6,
                            require_improvement=False, use_pseudo_labels=False, nice=0)
    resp_node = start_node("response_node", projector=str(base), threads=1, max_new_tokens=12,
                           queue_size=16)
    procs = [adapt_node, resp_node]
    assert adapt_node.wait_for_log("base projector base-test", 120), adapt_node.output()
    assert resp_node.wait_for_log("base projector base-test", 120), resp_node.output()
    assert spin_until(ros_node, lambda: feat_pub.get_subscription_count() >= 2, 30, procs)

    def features(uid, r, user="carol"):
        m = SpeechFeatures(utterance_id=uid, user_id=user, frames=r.frames, dim=r.dim,
                           transcript=r.transcript.text, confidence=0.5,
                           asr_model_id=asr.model_id, audio_duration_s=r.duration_s)
        m.data = r.features.reshape(-1)
        return m

    # log the user's speech (and one bad message, which is dropped)
    feat_pub.publish(SpeechFeatures(utterance_id="bad", user_id="carol", frames=3, dim=384,
                                    data=np.zeros(5, np.float32)))
    for uid, _, r in utterances:
        feat_pub.publish(features(uid, r))
    assert adapt_node.wait_for_log("not logging 'bad'", 30), adapt_node.output()
    assert spin_until(ros_node, lambda: len(responses) >= len(utterances), 240, procs), \
        resp_node.output()
    assert all(r.projector_version == "base-test" for r in responses)

    # the user corrects what the robot heard
    correct = ros_node.create_client(CorrectTranscript, "correct_transcript")
    for uid, text, _ in utterances:
        res = call(ros_node, correct, CorrectTranscript.Request(user_id="carol", utterance_id=uid,
                                                                text=text), procs)
        assert res.success, res.message
    res = call(ros_node, correct, CorrectTranscript.Request(user_id="carol", utterance_id="nope",
                                                            text="x"), procs)
    assert not res.success and "no logged utterance" in res.message

    # Adapt action: feedback while training, a result, and a projector update on the topic
    client = ActionClient(ros_node, AdaptAction, "adapt")
    assert spin_until(ros_node, lambda: client.server_is_ready(), 30, procs)
    feedback = []
    goal_future = client.send_goal_async(AdaptAction.Goal(user_id="carol"),
                                         feedback_callback=lambda f: feedback.append(f.feedback))
    assert spin_until(ros_node, goal_future.done, 30, procs)
    goal = goal_future.result()
    assert goal.accepted
    result_future = goal.get_result_async()
    assert spin_until(ros_node, result_future.done, 300, procs), adapt_node.output()
    result = result_future.result().result
    assert result.success and result.published, result.message
    assert any(f.stage == "training" and f.step > 0 and f.loss > 0 for f in feedback)
    assert any(f.stage == "validating" and f.validation_wer >= 0 for f in feedback)
    assert {m.name for m in result.metrics} >= {"wer_before", "wer_after", "train_s"}
    assert spin_until(ros_node, lambda: any(u.version == result.version for u in updates), 30,
                      procs)
    update = next(u for u in updates if u.version == result.version)
    assert update.user_id == "carol" and len(update.checkpoint) > 100_000
    assert update.parent_version == "base-test"

    # the response node hot-swaps: carol's next response names the new version, bob's does not
    assert resp_node.wait_for_log(f"projector {result.version} now serves user 'carol'", 30)
    n = len(responses)
    feat_pub.publish(features("after-1", utterances[0][2]))
    feat_pub.publish(features("after-2", utterances[1][2], user="bob"))
    assert spin_until(ros_node, lambda: len(responses) >= n + 2, 120, procs)
    by_id = {r.utterance_id: r for r in responses}
    assert by_id["after-1"].projector_version == result.version
    assert by_id["after-2"].projector_version == "base-test"

    # the service form returns at once with a job id
    adapt = ros_node.create_client(Adapt, "adapt")
    res = call(ros_node, adapt, Adapt.Request(user_id="carol", epochs=1), procs)
    assert res.accepted and res.job_id, res.message
    job_id = res.job_id
    res = call(ros_node, adapt, Adapt.Request(user_id="../../etc"), procs)
    assert not res.accepted and "invalid user id" in res.message
    assert adapt_node.wait_for_log(f"adaptation {job_id} for 'carol'", 300), adapt_node.output()

    # rollback, then forget: carol is back on the base projector, her data is gone
    rollback = ros_node.create_client(Rollback, "rollback")
    res = call(ros_node, rollback, Rollback.Request(user_id="nobody"), procs)
    assert not res.success and "no adapted projector" in res.message
    forget = ros_node.create_client(ForgetUser, "forget_user")
    res = call(ros_node, forget, ForgetUser.Request(user_id="carol"), procs)
    assert res.success and res.utterances_deleted == len(utterances) + 1  # + "after-1"
    assert res.projectors_deleted >= 1
    assert resp_node.wait_for_log("user 'carol' is back on the base projector", 30)
    assert not (tmp_path / "store" / "users" / "carol").exists()
    assert adapt_node.poll() is None and resp_node.poll() is None
