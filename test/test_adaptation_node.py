"""Adaptation over real DDS between real processes: logging, corrections, the Adapt action with
feedback, the projector update reaching the response node, pseudo-labels per request, the
recogniser (and both) adapted and served by the ASR node, forged recogniser updates ignored,
rollback and forget.

One scenario, split by behaviour: the module's ``world`` starts the adaptation and response
nodes once, and the tests below run in file order on it (carol logs and corrects, then adapts,
then is served, then is forgotten).
"""
import types

import numpy as np
import pytest
import torch

from conftest import NodeProcess, call_service, spin_until

pytestmark = [pytest.mark.ros, pytest.mark.real_models, pytest.mark.e2e]


@pytest.fixture(scope="module")
def carol():
    """12 real utterances of one speaker (Asterisk prompts), with their true text."""
    from tinyalign_ros.core.speech.asr import AsrFrontEnd
    from tinyalign_ros.core.speech.audio import load_audio
    from tinyalign_ros.corpus.corpora import asterisk_examples

    asr = AsrFrontEnd(cpu_threads=2)
    out = []
    for ex in [e for e in asterisk_examples() if 2 <= len(e.text.split()) <= 8][:12]:
        audio = load_audio(ex.audio)
        r = asr.process(audio)
        r.audio = audio
        out.append((ex.id, ex.text, r))
    return asr, out


def base_projector(path, asr_model_id):
    from tinyalign_ros.core.assistant.checkpoint import Projector, ProjectorMeta, save_checkpoint
    from tinyalign_ros.core.assistant.llm import llm_id
    from tinyalign_ros.core.assistant.projector import BridgeFormer, ProjectorConfig
    from tinyalign_ros.core.models import resolve_llm

    torch.manual_seed(0)
    proj = BridgeFormer(ProjectorConfig(layers=1))
    meta = ProjectorMeta(asr_model_id=asr_model_id, llm_model_id=llm_id(resolve_llm()),
                         projector=proj.config.to_dict(), version="base-test")
    return save_checkpoint(Projector(proj, meta), path)


def call(node, client, request, procs, timeout=30):
    return call_service(node, client, request, procs, timeout)


@pytest.fixture(scope="module")
def world(rclpy_context, carol, tmp_path_factory):
    from tinyalign_ros.msg import ProjectorUpdate, RecognizerUpdate, Response, SpeechFeatures
    from tinyalign_ros.nodes.asr_node import audio_int16
    from tinyalign_ros.nodes.common import PROJECTOR_QOS, RELIABLE_QOS

    asr, utterances = carol
    tmp = tmp_path_factory.mktemp("adaptation")
    base = base_projector(tmp / "base.safetensors", asr.model_id)
    node = rclpy_context.create_node("test_adaptation")
    w = types.SimpleNamespace(node=node, asr=asr, utterances=utterances, store=tmp / "store",
                              updates=[], responses=[], rec_updates=[], heard=[])
    node.create_subscription(ProjectorUpdate, "projector_updates", w.updates.append,
                             PROJECTOR_QOS)
    node.create_subscription(RecognizerUpdate, "recognizer_updates", w.rec_updates.append,
                             PROJECTOR_QOS)
    # what the ASR node transcribes (the test's own feature messages carry no recogniser_version
    # and no speech_end stamp; the ASR node's carry a stamp)
    node.create_subscription(SpeechFeatures, "speech_features",
                             lambda m: w.heard.append(m) if m.speech_end.sec else None,
                             RELIABLE_QOS)
    node.create_subscription(Response, "response", w.responses.append, RELIABLE_QOS)
    w.feat_pub = node.create_publisher(SpeechFeatures, "speech_features", RELIABLE_QOS)
    # the shipped recipe (CE on the hinted prompt), 2 epochs; publish even without improvement
    # so that the update path is exercised whatever the validation WER does
    w.adapt_node = NodeProcess("adaptation_node", dict(
        projector=str(base), store_dir=str(w.store), min_utterances=6,
        require_improvement=False, nice=0, recognizer_epochs=2), tmp)
    # aligned: the test base carries no validated WERs, so mode auto would serve the cascade
    w.resp_node = NodeProcess("response_node", dict(projector=str(base), threads=1,
                                                    max_new_tokens=12, queue_size=16,
                                                    mode="aligned"), tmp)
    w.asr_node = NodeProcess("asr_node", dict(cpu_threads=1, user_id="carol"), tmp)
    w.procs = [w.adapt_node, w.resp_node, w.asr_node]

    def features(uid, r, user="carol", confidence=0.5):
        m = SpeechFeatures(utterance_id=uid, user_id=user, frames=r.frames, dim=r.dim,
                           transcript=r.transcript.text, confidence=confidence,
                           asr_model_id=asr.model_id, audio_duration_s=r.duration_s)
        m.data = r.features.reshape(-1)
        m.audio, m.audio_sample_rate = audio_int16(r.audio), 16000   # as the ASR node sends
        return m

    w.features = features
    assert w.adapt_node.wait_for_log("base projector base-test", 120), w.adapt_node.output()
    assert w.resp_node.wait_for_log("base projector base-test", 120), w.resp_node.output()
    assert w.asr_node.wait_for_log("Whisper whisper-tiny.en", 120), w.asr_node.output()
    assert spin_until(node, lambda: w.feat_pub.get_subscription_count() >= 2, 30, w.procs)
    yield w
    for p in w.procs:
        p.stop()
    node.destroy_node()


def test_utterances_are_logged_and_a_bad_message_dropped(world):
    from tinyalign_ros.msg import SpeechFeatures

    w = world
    w.feat_pub.publish(SpeechFeatures(utterance_id="bad", user_id="carol", frames=3, dim=384,
                                      data=np.zeros(5, np.float32)))
    for uid, _, r in w.utterances:
        w.feat_pub.publish(w.features(uid, r))
    assert w.adapt_node.wait_for_log("not logging 'bad'", 30), w.adapt_node.output()
    assert spin_until(w.node, lambda: len(w.responses) >= len(w.utterances), 240, w.procs), \
        w.resp_node.output()
    assert all(r.projector_version == "base-test" for r in w.responses)
    assert len(list((w.store / "users" / "carol" / "features").glob("*.npy"))) == \
        len(w.utterances)
    assert len(list((w.store / "users" / "carol" / "audio").glob("*.wav"))) == \
        len(w.utterances)


def test_corrections_attach_to_logged_utterances_only(world):
    from tinyalign_ros.srv import CorrectTranscript

    w = world
    correct = w.node.create_client(CorrectTranscript, "correct_transcript")
    for uid, text, _ in w.utterances:
        res = call(w.node, correct, CorrectTranscript.Request(user_id="carol", utterance_id=uid,
                                                              text=text), w.procs)
        assert res.success, res.message
    res = call(w.node, correct, CorrectTranscript.Request(user_id="carol", utterance_id="nope",
                                                          text="x"), w.procs)
    assert not res.success and "no logged utterance" in res.message


def test_adapt_action_reports_progress_and_publishes_the_projector(world):
    from rclpy.action import ActionClient

    from tinyalign_ros.action import Adapt as AdaptAction
    from tinyalign_ros.core.assistant.checkpoint import from_bytes
    from tinyalign_ros.core.assistant.prompt import PromptConfig

    w = world
    client = ActionClient(w.node, AdaptAction, "adapt")
    assert spin_until(w.node, lambda: client.server_is_ready(), 30, w.procs)
    feedback = []
    # the projector alone (the node's default, both, adapts the recogniser first: tested below)
    goal_future = client.send_goal_async(AdaptAction.Goal(user_id="carol", target="projector"),
                                         feedback_callback=lambda f: feedback.append(f.feedback))
    assert spin_until(w.node, goal_future.done, 30, w.procs)
    goal = goal_future.result()
    assert goal.accepted
    result_future = goal.get_result_async()
    assert spin_until(w.node, result_future.done, 300, w.procs), w.adapt_node.output()
    result = result_future.result().result
    assert result.success and result.published, result.message
    assert any(f.stage == "training" and f.step > 0 and f.loss > 0 for f in feedback)
    assert any(f.stage == "validating" and f.validation_wer >= 0 for f in feedback)
    assert {m.name for m in result.metrics} >= {"wer_before", "wer_after", "train_s"}
    assert spin_until(w.node, lambda: any(u.version == result.version for u in w.updates), 30,
                      w.procs)
    update = next(u for u in w.updates if u.version == result.version)
    assert update.user_id == "carol" and len(update.checkpoint) > 100_000
    assert update.parent_version == "base-test"
    # the checkpoint records the prompt it was trained and validated with: the node's (hinted)
    recorded = from_bytes(bytes(update.checkpoint)).meta
    assert PromptConfig(**recorded.prompt) == PromptConfig()
    assert recorded.training["adapt"]["objective"] == "ce"
    w.adapted_version = result.version


def test_the_response_node_hot_swaps_to_the_adapted_projector(world):
    w = world
    version = w.adapted_version
    assert w.resp_node.wait_for_log(f"projector {version} now serves user 'carol'", 30)
    n = len(w.responses)
    w.feat_pub.publish(w.features("after-1", w.utterances[0][2]))
    w.feat_pub.publish(w.features("after-2", w.utterances[1][2], user="bob"))
    assert spin_until(w.node, lambda: len(w.responses) >= n + 2, 120, w.procs)
    by_id = {r.utterance_id: r for r in w.responses}
    assert by_id["after-1"].projector_version == version
    assert by_id["after-2"].projector_version == "base-test"


def test_a_request_can_turn_pseudo_labels_off(world):
    """dave has 8 confident uncorrected utterances and 2 corrected ones: with pseudo-labels
    (the node's default) 8 + 2 are usable; a request that turns them off leaves 2."""
    from rclpy.action import ActionClient

    from tinyalign_ros.action import Adapt as AdaptAction
    from tinyalign_ros.srv import CorrectTranscript

    w = world
    for i, (uid, _, r) in enumerate(w.utterances[:10]):
        w.feat_pub.publish(w.features(f"dave-{i}", r, user="dave", confidence=0.95))
    correct = w.node.create_client(CorrectTranscript, "correct_transcript")

    def logged():
        res = call(w.node, correct, CorrectTranscript.Request(
            user_id="dave", utterance_id="dave-9", text=w.utterances[9][1]), w.procs)
        return res.success
    assert spin_until(w.node, logged, 30, w.procs)
    assert call(w.node, correct, CorrectTranscript.Request(
        user_id="dave", utterance_id="dave-8", text=w.utterances[8][1]), w.procs).success

    client = ActionClient(w.node, AdaptAction, "adapt")
    off = AdaptAction.Goal(user_id="dave", pseudo_labels=AdaptAction.Goal.PSEUDO_LABELS_OFF)
    goal_future = client.send_goal_async(off)
    assert spin_until(w.node, goal_future.done, 30, w.procs) and goal_future.result().accepted
    result_future = goal_future.result().get_result_async()
    assert spin_until(w.node, result_future.done, 60, w.procs)
    result = result_future.result().result
    assert not result.success and "has 2 usable utterances" in result.message, result.message
    bad = AdaptAction.Goal(user_id="dave", pseudo_labels=7)
    goal_future = client.send_goal_async(bad)
    assert spin_until(w.node, goal_future.done, 30, w.procs)
    result_future = goal_future.result().get_result_async()
    assert spin_until(w.node, result_future.done, 30, w.procs)
    assert "pseudo_labels must be" in result_future.result().result.message


def test_adapt_service_returns_a_job_id_and_refuses_bad_users(world):
    from tinyalign_ros.srv import Adapt

    w = world
    adapt = w.node.create_client(Adapt, "adapt")
    res = call(w.node, adapt, Adapt.Request(user_id="carol", epochs=1, target="projector"),
               w.procs)
    assert res.accepted and res.job_id, res.message
    job_id = res.job_id
    res = call(w.node, adapt, Adapt.Request(user_id="../../etc"), w.procs)
    assert not res.accepted and "invalid user id" in res.message
    assert w.adapt_node.wait_for_log(f"adaptation {job_id} for 'carol'", 300), \
        w.adapt_node.output()


def say(w, audio, user):
    """``audio`` spoken to the ASR node as ``user``: 100 ms chunks at 4x real time, silence
    around it so the VAD cuts it."""
    from std_msgs.msg import String

    from tinyalign_ros.msg import AudioChunk
    from tinyalign_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS

    if not hasattr(w, "audio_pub"):
        w.audio_pub = w.node.create_publisher(AudioChunk, "audio", SENSOR_QOS)
        w.user_pub = w.node.create_publisher(String, "set_user", RELIABLE_QOS)
        assert spin_until(w.node, lambda: w.audio_pub.get_subscription_count() > 0 and
                          w.user_pub.get_subscription_count() > 0, 30, w.procs)
    w.user_pub.publish(String(data=user))
    assert w.asr_node.wait_for_log(f"user is now {user!r}", 10)
    stream = np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(24000, np.float32)])
    for i in range(0, stream.size, 1600):
        w.audio_pub.publish(AudioChunk(sample_rate=16000, channels=1, encoding="F32LE",
                                       samples=stream[i:i + 1600]))
        spin_until(w.node, lambda: False, 0.025)


def test_both_adapts_the_recogniser_first_and_the_asr_node_serves_it(world):
    """target both: a recogniser adapter (LoRA on Whisper's decoder, from the logged audio) is
    published on recognizer_updates and served by the ASR node for carol only; the projector
    trains after it (on the adapted recogniser's hints); each one's validation numbers."""
    from rclpy.action import ActionClient

    from tinyalign_ros.action import Adapt as AdaptAction

    w = world
    client = ActionClient(w.node, AdaptAction, "adapt")
    feedback = []
    goal_future = client.send_goal_async(AdaptAction.Goal(user_id="carol", target="both",
                                                          epochs=1),
                                         feedback_callback=lambda f: feedback.append(f.feedback))
    assert spin_until(w.node, goal_future.done, 30, w.procs) and goal_future.result().accepted
    result_future = goal_future.result().get_result_async()
    assert spin_until(w.node, result_future.done, 300, w.procs), w.adapt_node.output()
    result = result_future.result().result
    assert result.success and result.published, result.message
    metrics = {m.name: m.value for m in result.metrics}
    assert {"recognizer_wer_before", "recognizer_wer_after", "recognizer_train_s",
            "wer_before", "wer_after"} <= set(metrics), metrics
    assert metrics["recognizer_published"] == 1.0     # require_improvement is off here
    assert metrics["recognizer_before_served"] == 1.0  # judged against the logged transcripts
    # the default both_top2: decoder (~496 KB) + the encoder's last two layers (~149 KB), fp16
    assert 600_000 < metrics["recognizer_bytes"] < 700_000
    stages = [f.stage for f in feedback]
    assert "recognizer_training" in stages and "training" in stages
    assert stages.index("recognizer_training") < stages.index("training")  # recogniser first
    version = result.recognizer_version
    assert version.startswith("rec-carol-") and result.version != version
    assert spin_until(w.node, lambda: any(u.version == version for u in w.rec_updates), 30,
                      w.procs)
    update = next(u for u in w.rec_updates if u.version == version)
    assert update.user_id == "carol" and len(update.adapter) == metrics["recognizer_bytes"]
    assert (w.store / "users" / "carol" / "recognizers" / f"{version}.safetensors").is_file()
    assert w.asr_node.wait_for_log(f"recogniser {version} now serves user 'carol'", 30), \
        w.asr_node.output()
    # carol is transcribed with her adapter; bob by faster-whisper
    say(w, w.utterances[0][2].audio, "carol")
    assert spin_until(w.node, lambda: len(w.heard) >= 1, 60, w.procs), w.asr_node.output()
    say(w, w.utterances[1][2].audio, "bob")
    assert spin_until(w.node, lambda: len(w.heard) >= 2, 60, w.procs), w.asr_node.output()
    carol, bob = w.heard[:2]
    assert (carol.user_id, carol.recognizer_version) == ("carol", version)
    assert (bob.user_id, bob.recognizer_version) == ("bob", "")
    assert carol.transcript.strip() and len(carol.audio) > 16000 and carol.audio_sample_rate == 16000
    w.recognizer_version = version


def test_a_forged_recognizer_update_is_ignored(world):
    from tinyalign_ros.msg import RecognizerUpdate
    from tinyalign_ros.nodes.common import PROJECTOR_QOS

    w = world
    real = next(u for u in w.rec_updates if u.version == w.recognizer_version)
    pub = w.node.create_publisher(RecognizerUpdate, "recognizer_updates", PROJECTOR_QOS)
    forged = RecognizerUpdate(user_id="carol", version="rec-evil", adapter=bytes(real.adapter),
                              signature=b"\x00" * 32)
    forged.header.stamp.sec = real.header.stamp.sec + 10
    assert spin_until(w.node, lambda: pub.get_subscription_count() >= 1, 10, w.procs)
    pub.publish(forged)
    assert w.asr_node.wait_for_log("ignoring unsigned or forged recogniser update for 'carol' "
                                   "(version 'rec-evil')", 20), w.asr_node.output()
    assert "rec-evil now serves" not in w.asr_node.output()
    w.node.destroy_publisher(pub)


def test_rollback_and_forget_put_the_user_back_on_the_base(world):
    from tinyalign_ros.srv import ForgetUser, Rollback

    w = world
    rollback = w.node.create_client(Rollback, "rollback")
    res = call(w.node, rollback, Rollback.Request(user_id="nobody"), w.procs)
    assert not res.success and "no adapted projector" in res.message
    forget = w.node.create_client(ForgetUser, "forget_user")
    # the recogniser rolls back on its own: carol is on faster-whisper again, her projector stays
    res = call(w.node, rollback, Rollback.Request(user_id="carol", target="recognizer"), w.procs)
    assert res.success and res.recognizer_version == "" and res.version == "", res.message
    assert w.asr_node.wait_for_log("user 'carol' is back on the base recogniser", 30)
    assert "'carol' is back on the base projector" not in w.resp_node.output()
    assert (w.store / "users" / "carol" / "audio").is_dir()
    res = call(w.node, forget, ForgetUser.Request(user_id="carol"), w.procs)
    # + "after-1", + what carol said to the ASR node
    spoken = sum(m.user_id == "carol" for m in w.heard)
    assert res.success and res.utterances_deleted == len(w.utterances) + 1 + spoken
    assert res.projectors_deleted >= 1 and res.recognizers_deleted == 1
    assert w.resp_node.wait_for_log("user 'carol' is back on the base projector", 30)
    assert not (w.store / "users" / "carol").exists()      # features, audio, adapters
    assert w.adapt_node.poll() is None and w.resp_node.poll() is None
