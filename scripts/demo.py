#!/usr/bin/env python3
"""make demo: the tinyalign_ros graph on recorded speech, as separate processes over DDS.

Starts the four nodes as separate processes: capture (file source, real time) on six real
recordings (five LibriVox utterances and "go forward ten meters" from Debian's
pocketsphinx-testdata), ASR, response (projector + SmolLM2) and adaptation; prints what arrives
on the topics for each utterance; then corrects the transcripts over the correct_transcript
service, runs the Adapt action with its feedback, and says the first utterance again to show
the response node serving the adapted projector. ``--single-process``: the same four nodes in
one process (graph_node), sharing one LLM. Then a hard synthetic speaker (``--hard-speaker``)
corrects a few dozen utterances and adapts, and its next sentences are answered by the cascade
and the aligned path side by side, with each one's WER. Run from `source scripts/env.sh`.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the install env.sh chose (Kilted ./install, or ./install-jazzy with TINYALIGN_ROS_DISTRO=jazzy)
LIB = Path(os.environ.get("TINYALIGN_INSTALL", ROOT / "install")) / "tinyalign_ros" / "lib" / \
    "tinyalign_ros"
SPEECH = Path("/usr/share/pocketsphinx/test/data")


def references() -> dict[str, str]:
    refs = {"goforward": "go forward ten meters"}
    for line in (SPEECH / "librivox" / "transcription").read_text().splitlines():
        text, _, utt = line.rpartition("(")
        refs[utt.strip(") ")] = text.replace("<s>", "").replace("</s>", "").strip()
    return refs


def start(executable: str, log_dir: Path, params_file: Path | None = None,
          **params) -> subprocess.Popen:
    cmd = [str(LIB / executable), "--ros-args"]
    if params_file is not None:
        cmd += ["--params-file", str(params_file)]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    log = open(log_dir / f"{executable}.log", "wb")
    print(f"$ {' '.join(cmd)}")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def call(node, client, request, timeout=60.0):
    import rclpy

    deadline = time.monotonic() + timeout
    while not client.service_is_ready() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    future = client.call_async(request)
    while not future.done() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    return future.result()


def wait_for_responses(node, responses, utterance_id: str, want_modes: int,
                       timeout: float = 60.0) -> None:
    """Spin until ``want_modes`` responses to the utterance came in, or ``timeout`` s."""
    import rclpy

    deadline = time.monotonic() + timeout
    while len(responses.get(utterance_id, [])) < want_modes and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)


def adapt_demo(node, got, refs, sources, responses, want_modes) -> None:
    """The user corrects what the robot heard, asks it to adapt, and speaks again."""
    from tinyalign_ros.msg import SpeechFeatures
    from tinyalign_ros.nodes.common import RELIABLE_QOS
    from tinyalign_ros.srv import CorrectTranscript

    print("\n--- adaptation: the user corrects the transcripts, then calls the Adapt action ---")
    correct = node.create_client(CorrectTranscript, "correct_transcript")
    for f, src in zip(got, sources):
        res = call(node, correct, CorrectTranscript.Request(
            user_id=f.user_id, utterance_id=f.utterance_id, text=refs[src.stem]))
        print(f"  correct_transcript {f.utterance_id}: {res.message if res else 'no answer'}")
    result = run_adapt(node, got[0].user_id)
    if result is None or not result.published:
        return
    # the response node hot-swaps to the new projector: say the first thing again
    pub = node.create_publisher(SpeechFeatures, "speech_features", RELIABLE_QOS)
    again = got[0]
    again.utterance_id = again.utterance_id + "-again"
    time.sleep(1.0)
    pub.publish(again)
    wait_for_responses(node, responses, again.utterance_id, want_modes)
    for r in responses.get(again.utterance_id, []):
        print(f"  again: {r.text!r} [{r.mode}; projector {r.projector_version or '-'}]")


#: the demo gives up on a job that has sent no feedback for ADAPT_STALL_S, or runs past
#: ADAPT_WAIT_S. Not one fixed wait: the default job on 40 utterances took 110-230 s on 2 idle
#: cores and outlasted a fixed 600 s beside a test run, still progressing.
ADAPT_STALL_S = 300
ADAPT_WAIT_S = 1800


def run_adapt(node, user: str):
    """The Adapt action for ``user``, its feedback printed; the result, or None once the job
    stalls (``ADAPT_STALL_S`` without feedback) or outlasts ``ADAPT_WAIT_S``."""
    import rclpy
    from rclpy.action import ActionClient

    from tinyalign_ros.action import Adapt

    client = ActionClient(node, Adapt, "adapt")
    client.wait_for_server(timeout_sec=30)
    t0 = time.monotonic()
    last = {}
    heard = [t0]          # when the last feedback came

    def feedback(msg):
        heard[0] = time.monotonic()
        fb = msg.feedback
        key = (fb.stage, fb.step // 10)
        if key not in last:
            last[key] = True
            wer = f"{fb.validation_wer:.2f}" if fb.validation_wer >= 0 else "not yet"
            print(f"  feedback: {fb.stage} step {fb.step}/{fb.total_steps} loss {fb.loss:.3f} "
                  f"validation WER {wer} eta {fb.eta_s:.0f} s")

    goal_future = client.send_goal_async(Adapt.Goal(user_id=user), feedback_callback=feedback)
    while not goal_future.done():
        rclpy.spin_once(node, timeout_sec=0.1)
    result_future = goal_future.result().get_result_async()
    while not result_future.done():
        now = time.monotonic()
        if now - heard[0] > ADAPT_STALL_S or now - t0 > ADAPT_WAIT_S:
            break
        rclpy.spin_once(node, timeout_sec=0.1)
    result = result_future.result().result if result_future.done() else None
    if result is None:
        print(f"  no adaptation result after {time.monotonic() - t0:.0f} s (the demo waits "
              f"while the job sends feedback at least every {ADAPT_STALL_S} s, at most "
              f"{ADAPT_WAIT_S} s in all)")
        return None
    print(f"  result after {time.monotonic() - t0:.1f} s: success={result.success} "
          f"published={result.published} version={result.version!r}: {result.message}")
    return result


def hard_speaker_demo(node, responses, want_modes, speaker: str, pool_n: int,
                      test_n: int) -> None:
    """A hard synthetic speaker (a bench user: a voice Whisper often mishears) corrects
    ``pool_n`` utterances and asks to adapt (the default job: the recogniser, then the
    projector); then says ``test_n`` new sentences, answered by the cascade and the aligned path
    side by side. Their features (with their audio, as the ASR node's publish_audio sends it)
    are made here with the ASR node's own front end and published as the ASR node would, to
    spare minutes of real-time playback; once the user's recogniser adapter is published (on
    the latched recognizer_updates), their transcripts come from it, as the ASR node serves
    an adapted user."""
    import rclpy

    from tinyalign_ros.bench.speakers import examples
    from tinyalign_ros.core.metrics import wer
    from tinyalign_ros.core.speech.asr import AsrFrontEnd
    from tinyalign_ros.core.speech.audio import load_audio
    from tinyalign_ros.core.speech.recognizers import RecognizerTable
    from tinyalign_ros.msg import RecognizerUpdate, SpeechFeatures
    from tinyalign_ros.nodes.asr_node import audio_int16
    from tinyalign_ros.nodes.common import PROJECTOR_QOS, RELIABLE_QOS, features_to_msg
    from tinyalign_ros.srv import CorrectTranscript

    user = f"{speaker}_voice"
    print(f"\n--- a hard speaker: user {user!r} (synthetic '{speaker}' voice), {pool_n} "
          f"corrected utterances, then {test_n} new ones ---")
    pool, test = examples(speaker, pool_n, test_n)
    asr = AsrFrontEnd(cpu_threads=2)
    recognizers = RecognizerTable()      # the ASR node's, for this user
    recognizers.attach(asr.model_path, asr.torch_encoder, asr.beam_size)
    node.create_subscription(
        RecognizerUpdate, "recognizer_updates",
        lambda m: recognizers.put(m.user_id, bytes(m.adapter), m.version)
        if m.user_id == user and len(m.adapter) else None, PROJECTOR_QOS)
    pub = node.create_publisher(SpeechFeatures, "speech_features", RELIABLE_QOS)

    def say(audio, utterance_id: str, timeout: float = 60.0) -> SpeechFeatures:
        result = asr.process(audio, transcribe=recognizers.transcriber(user))
        msg = features_to_msg(result, utterance_id, user, asr.model_id,
                              recognizer_version=recognizers.version(user) or "",
                              speech_end=node.get_clock().now().to_msg())
        msg.audio, msg.audio_sample_rate = audio_int16(audio), 16000
        pub.publish(msg)
        wait_for_responses(node, responses, utterance_id, want_modes, timeout)
        return msg

    t0 = time.monotonic()
    said = [say(load_audio(ex.audio), f"{user}-{i:02d}") for i, ex in enumerate(pool)]
    wrong = sum(wer([ex.text], [m.transcript]) > 0 for m, ex in zip(said, pool))
    print(f"  {len(said)} utterances said and answered ({time.monotonic() - t0:.0f} s); Whisper "
          f"heard {wer([e.text for e in pool], [m.transcript for m in said]):.1%} WER "
          f"({wrong} of {len(pool)} with an error)")
    correct = node.create_client(CorrectTranscript, "correct_transcript")
    done = 0
    for m, ex in zip(said, pool):
        res = call(node, correct, CorrectTranscript.Request(user_id=user,
                                                            utterance_id=m.utterance_id,
                                                            text=ex.text))
        done += bool(res and res.success)
    print(f"  corrected: {done} of {len(said)}")
    result = run_adapt(node, user)
    if result is None:
        return
    if result.recognizer_version:    # the latched update reaches this listener too
        t1 = time.monotonic()
        while recognizers.version(user) != result.recognizer_version and \
                time.monotonic() - t1 < 30:
            rclpy.spin_once(node, timeout_sec=0.1)
        print(f"  recogniser adapter {recognizers.version(user) or '(not received)'} now "
              f"transcribes this user, as it does in the ASR node")
    else:
        print("  no recogniser adapter was published: faster-whisper still transcribes this "
              "user")
    print(f"  {test_n} new sentences, each answered by both paths:")
    refs, hyps = [e.text for e in test], {"cascade": [], "aligned": []}
    firsts = {"cascade": [], "aligned": []}
    heard, unadapted = [], []
    adapted = recognizers.version(user) is not None
    for i, ex in enumerate(test):
        uid = f"{user}-new-{i:02d}"
        audio = load_audio(ex.audio)
        msg = say(audio, uid)
        by_mode = {r.mode: r for r in responses.get(uid, [])}
        heard.append(msg.transcript)
        print(f"  said:    {ex.text!r}\n  heard:   {msg.transcript!r}")
        if adapted:   # what faster-whisper alone would have heard, for comparison
            unadapted.append(asr.transcribe(audio).text)
            print(f"  (faster-whisper alone: {unadapted[-1]!r})")
        for mode in ("cascade", "aligned"):
            r = by_mode.get(mode)
            hyps[mode].append(r.text if r else "")
            if r:
                firsts[mode].append(r.first_token_latency_s)
            print(f"  {mode + ':':8} {(r.text if r else '(no answer)')!r}")
    scores = {mode: wer(refs, h) for mode, h in hyps.items()}
    mean = {m: sum(v) / len(v) if v else 0.0 for m, v in firsts.items()}
    if adapted:
        print(f"  transcripts of the {test_n} new sentences: faster-whisper alone "
              f"{wer(refs, unadapted):.1%} WER, this user's adapted recogniser "
              f"{wer(refs, heard):.1%} (what both paths below read)")
    # speech_end is stamped when the features are published here: no VAD wait, no ASR time
    print(f"  WER on the {test_n} new sentences: cascade {scores['cascade']:.1%}, aligned "
          f"{scores['aligned']:.1%}; first token (mean, from the features' publication, each "
          f"as if it alone answered): cascade {mean['cascade']:.2f} s, aligned "
          f"{mean['aligned']:.2f} s")
    if scores["aligned"] < scores["cascade"]:
        print("  the adapted aligned path beat the cascade on this speaker's new sentences")
    else:
        print("  the aligned path did NOT beat the cascade on this speaker's new sentences "
              "(docs/BENCHMARKS.md, \"The shipped base\": the same, measured on more)")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (Linux); 0 once it is gone."""
    from tinyalign_ros.bench.cost import rss_mb

    try:
        return rss_mb("VmHWM", pid)
    except (OSError, RuntimeError):
        return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speed", type=float, default=1.0, help="file playback speed")
    parser.add_argument("--user", default="demo_user")
    parser.add_argument("--no-adapt", action="store_true", help="skip the adaptation parts")
    parser.add_argument("--hard-speaker", default="whisper",
                        help="the bench's synthetic hard speaker who corrects and adapts after "
                             "the recordings ('' to skip)")
    parser.add_argument("--hard-pool", type=int, default=40,
                        help="the hard speaker's corrected utterances")
    parser.add_argument("--hard-test", type=int, default=10,
                        help="the hard speaker's new sentences after adapting")
    parser.add_argument("--mode", default="both", choices=("auto", "aligned", "cascade", "both"),
                        help="response node mode")
    parser.add_argument("--single-process", action="store_true",
                        help="the four nodes in one process (graph_node) sharing one LLM")
    parser.add_argument("--param", action="append", default=[], metavar="NODE.NAME=VALUE",
                        help="a node parameter to set, e.g. asr.vad_speculate_after_s=0 "
                             "(repeatable; VALUE is read as YAML)")
    args = parser.parse_args()
    if not LIB.is_dir():
        print(f"{LIB} is missing: run `make setup` first", file=sys.stderr)
        return 1
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")

    import rclpy

    from tinyalign_ros.core.speech.audio import load_audio
    from tinyalign_ros.msg import Response, SpeechFeatures
    from tinyalign_ros.nodes.common import RELIABLE_QOS

    work = Path(tempfile.mkdtemp(prefix="tinyalign-demo-"))
    clips = work / "clips"
    clips.mkdir()
    # played in name order, as the file source sorts a folder
    sources = sorted([*(SPEECH / "librivox").glob("*.wav"), SPEECH / "goforward.raw"],
                     key=lambda p: p.name)
    for src in sources:
        (clips / src.name).symlink_to(src)
    total_s = sum(load_audio(s).size / 16000 + 1.0 for s in sources)
    refs = references()

    rclpy.init()
    node = rclpy.create_node("demo_listener")
    got: list = []
    responses: dict = {}
    node.create_subscription(SpeechFeatures, "speech_features", got.append, RELIABLE_QOS)
    node.create_subscription(Response, "response",
                             lambda m: responses.setdefault(m.utterance_id, []).append(m),
                             RELIABLE_QOS)

    print(f"tinyalign_ros demo: {len(sources)} recordings ({total_s:.0f} s with gaps), "
          f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, logs in {work}")
    settings = {"response": {"threads": 2, "mode": args.mode},
                "adaptation": {"store_dir": str(work / "store"), "min_utterances": 5},
                "asr": {"user_id": args.user, "cpu_threads": 2},
                "capture": {"source": "file", "file_path": str(clips),
                            "playback_speed": args.speed}}
    for item in args.param:
        import yaml

        key, _, value = item.partition("=")
        node_name, _, name = key.partition(".")
        if node_name not in settings or not name or not value:
            parser.error(f"--param {item!r}: expected NODE.NAME=VALUE with NODE one of "
                         f"{sorted(settings)}")
        settings[node_name][name] = yaml.safe_load(value)
    if args.single_process:
        import yaml

        from tinyalign_ros.graph import CONFIG_FILE, SINGLE_PROCESS_EXECUTABLE

        config = yaml.safe_load((ROOT / "config" / CONFIG_FILE).read_text())
        for name, values in settings.items():
            config[name]["ros__parameters"].update(values)
        params = work / "graph.yaml"
        params.write_text(yaml.safe_dump(config))
        # the capture node inside starts playing once the others have loaded their models
        procs = {SINGLE_PROCESS_EXECUTABLE: start(SINGLE_PROCESS_EXECUTABLE, work, params)}
    else:
        procs = {"response_node": start("response_node", work, **settings["response"]),
                 "adaptation_node": start("adaptation_node", work, **settings["adaptation"]),
                 "asr_node": start("asr_node", work, **settings["asr"])}
    # play the files only once the managed nodes have loaded their models and joined the graph
    # (features published before then would be lost, or not logged for the adaptation)
    print("waiting for the asr, response and adaptation nodes to load their models ...")
    ready_by = time.monotonic() + 180
    # subscribed is not enough: a managed node logs and answers only once active (models
    # loaded), so wait for every managed node's lifecycle state too
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState
    clients = {name: node.create_client(GetState, f"/{name}/get_state")
               for name in ("asr", "response", "adaptation")}
    pending = {}

    def all_active() -> bool:
        active = True
        for name, client in clients.items():
            future = pending.get(name)
            if future is not None and future.done():
                if future.result().current_state.id == State.PRIMARY_STATE_ACTIVE:
                    continue
                future = None          # not active yet: ask again
            active = False
            if future is None and client.service_is_ready():
                pending[name] = client.call_async(GetState.Request())
        return active

    while not (node.count_publishers("speech_features") >= 1 and
               node.count_subscribers("speech_features") >= 3 and all_active()):
        rclpy.spin_once(node, timeout_sec=0.2)
        if time.monotonic() > ready_by or any(p.poll() is not None for p in procs.values()):
            print("the asr/response/adaptation nodes did not come up; logs in " + str(work),
                  file=sys.stderr)
            return 1
    if not args.single_process:
        procs["capture_node"] = start("capture_node", work, **settings["capture"])
    t0 = time.monotonic()
    deadline = t0 + 60 + total_s / args.speed * 2
    shown = 0
    want_modes = 2 if args.mode == "both" else 1

    def complete(f) -> bool:
        return len(responses.get(f.utterance_id, [])) >= want_modes

    try:
        while time.monotonic() < deadline and shown < len(sources):
            rclpy.spin_once(node, timeout_sec=0.2)
            for name, p in procs.items():
                if p.poll() is not None:
                    print(f"{name} exited with {p.returncode}; its log:\n"
                          + (work / f"{name}.log").read_text(), file=sys.stderr)
                    return 1
            while shown < len(got) and complete(got[shown]):
                f = got[shown]
                shown += 1
                ref = refs.get(sources[shown - 1].stem, "?") if shown <= len(sources) else "?"
                print(f"\n[{time.monotonic() - t0:5.1f} s] utterance {f.utterance_id} "
                      f"(user {f.user_id}, {f.audio_duration_s:.1f} s of speech)")
                print(f"  heard:      {f.transcript!r}  (confidence {f.confidence:.2f})")
                print(f"  reference:  {ref!r}")
                print(f"  features:   {f.frames} x {f.dim} encoder states from {f.asr_model_id}")
                for r in responses[f.utterance_id]:
                    tag = f"{r.mode}" + (f" (projector {r.projector_version})"
                                         if r.projector_version else "")
                    if args.mode == "auto":
                        tag += f"; {r.reason}"
                    print(f"  response:   {r.text!r}  [{tag}; first token "
                          f"{r.first_token_latency_s:.2f} s after end of speech, {r.tokens} tokens]")
        if shown == len(sources) and not args.no_adapt:
            adapt_demo(node, got, refs, sources, responses, want_modes)
            if args.hard_speaker and args.mode == "both":   # side by side needs both paths
                hard_speaker_demo(node, responses, want_modes, args.hard_speaker,
                                  args.hard_pool, args.hard_test)
        peaks = {name: peak_rss_mb(p.pid) for name, p in procs.items()}
        print("\npeak memory (VmHWM): " + ", ".join(f"{n} {v:.0f} MB" for n, v in peaks.items())
              + f"; whole graph {sum(peaks.values()):.0f} MB")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        node.destroy_node()
        rclpy.shutdown()
    print(f"\nDone: {shown} utterance(s) went recording -> capture_node -> audio -> asr_node "
          f"(Silero VAD, Whisper tiny.en) -> speech_features -> response_node (BridgeFormer + "
          f"SmolLM2-135M) and adaptation_node -> response -> this listener, "
          + ("all four nodes in one process." if args.single_process
             else "each node its own process over DDS."))
    return 0 if shown == len(sources) else 1


if __name__ == "__main__":
    raise SystemExit(main())
