"""The whole graph: the four node executables as separate processes over DDS, and the same four
nodes in one process (graph_node); the capture node playing real recorded speech from files, the
shipped base projector, the real default models."""
import pytest
import yaml

from conftest import LIBRIVOX, ROOT, call_service, librivox_references, spin_until

pytestmark = [pytest.mark.ros, pytest.mark.real_models, pytest.mark.e2e]


def correct_all(ros_node, user, features, files, procs):
    """Attach each recording's true text to its logged utterance (correct_transcript)."""
    from tinyalign_ros.srv import CorrectTranscript

    refs = librivox_references()
    client = ros_node.create_client(CorrectTranscript, "correct_transcript")
    for f, path in zip(features, files):
        result = call_service(ros_node, client, CorrectTranscript.Request(
            user_id=user, utterance_id=f.utterance_id, text=refs[path.stem]), procs)
        assert result.success, result.message


def test_four_nodes_answer_recorded_speech(ros_node, start_node, tmp_path):
    from std_msgs.msg import String

    from tinyalign_ros.msg import Response, SpeechFeatures
    from tinyalign_ros.nodes.common import RELIABLE_QOS

    features, transcripts, responses = [], [], []
    ros_node.create_subscription(SpeechFeatures, "speech_features", features.append, RELIABLE_QOS)
    ros_node.create_subscription(String, "transcript", transcripts.append, RELIABLE_QOS)
    ros_node.create_subscription(Response, "response", responses.append, RELIABLE_QOS)

    asr = start_node("asr_node", cpu_threads=1, user_id="dana")
    resp = start_node("response_node", threads=1, mode="both", max_new_tokens=16, queue_size=16)
    adapt = start_node("adaptation_node", store_dir=str(tmp_path / "store"), nice=0)
    procs = [asr, resp, adapt]
    # the model nodes are up when they publish / subscribe speech_features (+ this test)
    assert spin_until(ros_node, lambda: ros_node.count_publishers("speech_features") >= 1 and
                      ros_node.count_subscribers("speech_features") >= 3, 180, procs), \
        asr.output() + resp.output() + adapt.output()
    files = sorted(LIBRIVOX.glob("*.wav"))[:3]
    cap = start_node("capture_node", source="file", file_path=str(LIBRIVOX / "*.wav"),
                     playback_speed=2.0)
    procs.append(cap)

    assert spin_until(ros_node, lambda: len(features) >= 3, 180, procs), asr.output()
    ids = [f.utterance_id for f in features[:3]]
    assert spin_until(ros_node, lambda: sum(r.utterance_id in ids for r in responses) >= 6,
                      300, procs), resp.output()
    refs = librivox_references()
    for f, path in zip(features[:3], files):
        assert f.user_id == "dana" and f.frames > 50 and f.transcript
        ref_words = set(refs[path.stem].split())
        assert len(set(f.transcript.lower().replace(".", "").split()) & ref_words) >= 3
        mine = {r.mode: r for r in responses if r.utterance_id == f.utterance_id}
        assert set(mine) == {"aligned", "cascade"}
        assert mine["cascade"].text.strip() and mine["aligned"].tokens >= 0
        assert mine["aligned"].projector_version and not mine["cascade"].projector_version
    assert [t.data for t in transcripts[:3]] == [f.transcript for f in features[:3]]

    # the adaptation node logged every utterance: each can be corrected
    correct_all(ros_node, "dana", features[:3], files, procs)
    assert all(p.poll() is None for p in procs)


def test_single_process_graph_answers_and_adapts_with_one_llm(ros_node, start_node, tmp_path):
    from rclpy.action import ActionClient

    from tinyalign_ros import graph
    from tinyalign_ros.action import Adapt
    from tinyalign_ros.msg import Response, SpeechFeatures
    from tinyalign_ros.nodes.common import RELIABLE_QOS

    features, responses = [], []
    ros_node.create_subscription(SpeechFeatures, "speech_features", features.append, RELIABLE_QOS)
    ros_node.create_subscription(Response, "response", responses.append, RELIABLE_QOS)
    feat_pub = ros_node.create_publisher(SpeechFeatures, "speech_features", RELIABLE_QOS)

    # the shipped parameter file, its per-node sections changed as a robot user would
    config = yaml.safe_load((ROOT / "config" / graph.CONFIG_FILE).read_text())
    config["capture"]["ros__parameters"].update(source="file", playback_speed=2.0,
                                                file_path=str(LIBRIVOX / "*.wav"))
    config["asr"]["ros__parameters"].update(user_id="erin", device="cpu")
    config["response"]["ros__parameters"].update(max_new_tokens=16, device="cpu", mode="aligned")
    config["adaptation"]["ros__parameters"].update(
        store_dir=str(tmp_path / "store"), min_utterances=3, val_fraction=0.34, epochs=2,
        device="cpu")
    params = tmp_path / "graph.yaml"
    params.write_text(yaml.safe_dump(config))
    g = start_node(graph.SINGLE_PROCESS_EXECUTABLE, params_file=params)
    procs = [g]

    assert spin_until(ros_node, lambda: len(features) >= 3, 240, procs), g.output()
    ids = [f.utterance_id for f in features[:3]]
    assert spin_until(ros_node, lambda: sum(r.utterance_id in ids for r in responses) >= 3,
                      180, procs), g.output()
    for r in responses[:3]:
        assert r.mode == "aligned" and r.projector_version and r.user_id == "erin"
    # the response and adaptation nodes hold one LLM between them
    assert "(1 LLM(s) loaded in this process)" in g.output()
    assert "single-process graph: nice and train_threads do not apply" in g.output()

    # correct the three, adapt, and ask for a response while the job uses the shared LLM
    correct_all(ros_node, "erin", features[:3], sorted(LIBRIVOX.glob("*.wav")), procs)
    client = ActionClient(ros_node, Adapt, "adapt")
    assert spin_until(ros_node, client.server_is_ready, 30, procs)
    goal_future = client.send_goal_async(Adapt.Goal(user_id="erin"))
    assert spin_until(ros_node, goal_future.done, 30, procs) and goal_future.result().accepted
    result_future = goal_future.result().get_result_async()
    again = features[0]
    again.utterance_id = "during-adaptation"
    feat_pub.publish(again)
    assert spin_until(ros_node, lambda: any(r.utterance_id == "during-adaptation"
                                            for r in responses), 120, procs), g.output()
    assert spin_until(ros_node, result_future.done, 300, procs), g.output()
    result = result_future.result().result
    assert result.success, result.message       # published, or refused by the gate: both done
    # the default target, both: the recogniser (on the audio the ASR node logged), then the
    # projector
    assert {m.name for m in result.metrics} >= {"wer_before", "wer_after", "train_s",
                                                 "recognizer_wer_before",
                                                 "recognizer_wer_after"}, result.message
    assert g.poll() is None

