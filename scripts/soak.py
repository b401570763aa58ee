#!/usr/bin/env python3
"""make soak MINUTES=10: the four-process graph under continuous speech, with an Adapt call every
few minutes; prints each node's resident memory (RSS, from /proc) over time and its slope after
a warm-up, which must be flat (every adapter that is no longer served is freed).

The capture node plays a recording in a loop (file source, real time, a short gap after each
take), the ASR node transcribes every utterance, the response node answers and the adaptation
node logs them; each utterance is corrected with the recording's text (--no-correct: left as
heard), so the default Adapt job adapts the recogniser (on the newest recognizer_max_utterances)
and then the projector; every --adapt-every minutes an Adapt call trains and publishes a new
projector for the speaking user, which replaces the one the response node serves. Not in CI. Run from
`source scripts/env.sh`; exits 1 when a node died or a slope after warm-up exceeds --max-slope.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faults import GOFORWARD, Graph  # noqa: E402
from tinyalign_ros.bench.cost import rss_mb as process_rss_mb  # noqa: E402

NODES = ("capture_node", "asr_node", "response_node", "adaptation_node")
GOFORWARD_TEXT = "go forward ten meters"


def rss_mb(pid: int) -> float:
    """A node's resident memory; 0 once its process is gone (the soak counts deaths itself)."""
    try:
        return process_rss_mb(pid=pid)
    except OSError:
        return 0.0


def slope_mb_per_min(t_s: list[float], mb: list[float]) -> float:
    if len(t_s) < 3 or max(t_s) == min(t_s):
        return 0.0
    return float(np.polyfit(np.array(t_s) / 60, np.array(mb), 1)[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    ap.add_argument("--adapt-every", type=float, default=4.0,
                    help="minutes between Adapt calls (default 4; the first after 1 min). Each "
                         "interval needs a sample between jobs for the verdict: the default "
                         "job (recogniser on 50 utterances, then the projector) took ~3.5 min "
                         "in the four-process graph on 2 cores")
    ap.add_argument("--adapt-utterances", type=int, default=0,
                    help="train each job on at most this many utterances (0: the node's "
                         "max_utterances), so that job size does not grow with the log")
    ap.add_argument("--retention", type=int, default=0,
                    help="the adaptation node's max_utterances_per_user (0: its default, 500): a "
                         "smaller log reaches its cap sooner, so a run shows default-size jobs "
                         "(the whole log) once they stop growing")
    ap.add_argument("--correct", action=argparse.BooleanOptionalAction, default=True,
                    help="correct each utterance with the recording's text (default), so that "
                         "the Adapt job's recogniser step runs; --no-correct: the projector "
                         "alone, on pseudo-labels")
    ap.add_argument("--sample-every", type=float, default=15.0, help="seconds between RSS samples")
    ap.add_argument("--warmup", type=float, default=None,
                    help="minutes of warm-up left out of the slope (default: a third of the "
                         "run, at least 3; the adaptation node's RSS rises over its first jobs)")
    ap.add_argument("--max-slope", type=float, default=2.0,
                    help="MB/min after warm-up above which a node counts as growing (default 2)")
    args = ap.parse_args(argv)
    warmup = (args.warmup if args.warmup is not None
              else min(max(3.0, args.minutes / 3), 0.5 * args.minutes))

    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy

    from tinyalign_ros.msg import ProjectorUpdate, Response, SpeechFeatures
    from tinyalign_ros.nodes.common import PROJECTOR_QOS, RELIABLE_QOS
    from tinyalign_ros.srv import Adapt, CorrectTranscript

    work = Path(tempfile.mkdtemp(prefix="tinyalign-soak-"))
    graph = Graph(work)
    graph.start("asr_node", cpu_threads=1, user_id="soak")
    graph.start("response_node", threads=1, mode="aligned", max_new_tokens=6)
    retention = {"max_utterances_per_user": args.retention} if args.retention else {}
    graph.start("adaptation_node", store_dir=str(work / "store"), nice=0, max_new_tokens=4,
                require_improvement="false", objective="embedlink", epochs=2, min_utterances=3,
                **retention)
    graph.start("capture_node", source="file", file_path=str(GOFORWARD), file_loop="true",
                file_gap_s=0.6, file_wait_for_subscriber_s=60.0)

    rclpy.init()
    node = rclpy.create_node("soak")
    counts = {"features": 0, "responses": 0, "updates": 0, "corrected": 0}
    to_correct, corrections, refusals = [], [], []

    def counter(key):
        def cb(_msg):
            counts[key] += 1
        return cb

    def on_features(msg):
        counts["features"] += 1
        if args.correct:
            to_correct.append((time.monotonic(), msg.utterance_id))
    node.create_subscription(SpeechFeatures, "speech_features", on_features, RELIABLE_QOS)
    node.create_subscription(Response, "response", counter("responses"), RELIABLE_QOS)
    node.create_subscription(ProjectorUpdate, "projector_updates", counter("updates"),
                             PROJECTOR_QOS)
    adapt = node.create_client(Adapt, "adapt")
    correct = node.create_client(CorrectTranscript, "correct_transcript")

    print(f"tinyalign_ros soak: {args.minutes:g} min, Adapt every {args.adapt_every:g} min, "
          f"warm-up {warmup:g} min; logs in {work}", flush=True)
    samples: list[tuple[float, dict]] = []
    adapts = []
    status = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not all(
                "]: active" in graph.log(e) for e in NODES[1:]):
            rclpy.spin_once(node, timeout_sec=0.5)
            if graph.dead():
                print("a node did not start:", graph.dead())
                return 1
        t0 = time.monotonic()
        next_sample, next_adapt, pending = 0.0, 60.0, None
        print("  t (min)  " + "  ".join(f"{e.split('_')[0]:>10}" for e in NODES)
              + "   (RSS MB)   features responses updates", flush=True)
        while (now := time.monotonic() - t0) < args.minutes * 60:
            rclpy.spin_once(node, timeout_sec=0.2)
            if graph.dead():
                print("  a node died:", graph.dead())
                status = 1
                break
            if now >= next_sample:
                row = {e: rss_mb(graph.procs[e].pid) for e in NODES}
                samples.append((now, row))
                print(f"  {now / 60:7.2f}  " + "  ".join(f"{row[e]:10.1f}" for e in NODES)
                      + f"   {counts['features']:>17} {counts['responses']:>9} "
                        f"{counts['updates']:>7}", flush=True)
                next_sample += args.sample_every
            # a few seconds after the features: the adaptation node must have logged the
            # utterance (its subscription and this service are separate callbacks)
            while (to_correct and time.monotonic() - to_correct[0][0] > 5.0
                   and correct.service_is_ready()):
                corrections.append(correct.call_async(CorrectTranscript.Request(
                    user_id="soak", utterance_id=to_correct.pop(0)[1], text=GOFORWARD_TEXT)))
            for f in [f for f in corrections if f.done()]:
                corrections.remove(f)
                if f.result() is not None and f.result().success:
                    counts["corrected"] += 1
                else:
                    refusals.append(f.result().message if f.result() else "no answer")
            if now >= next_adapt and adapt.service_is_ready():
                pending = adapt.call_async(Adapt.Request(user_id="soak",
                                                            max_utterances=args.adapt_utterances))
                next_adapt += args.adapt_every * 60
            if pending is not None and pending.done():
                r = pending.result()
                adapts.append(f"{now / 60:.1f} min: {'accepted ' + r.job_id if r.accepted else 'refused: ' + r.message}")
                print(f"  Adapt at {adapts[-1]}", flush=True)
                pending = None
    finally:
        node.destroy_node()
        rclpy.shutdown()
        graph.stop()

    if len(samples) < 2:
        print("too few samples")
        return 1
    warm = [s for s in samples if s[0] >= warmup * 60] or samples[-2:]
    # a job lifts the adaptation node by a GB for minutes, so the slope of all samples says
    # where the run ended more than whether memory leaks: the verdict is the slope of each
    # Adapt interval's lowest sample (between jobs), all samples' beside it
    window = args.adapt_every * 60
    n_windows = len({int(t // window) for t, _ in warm})
    print(f"\nRSS per node (MB): start, after warm-up ({warmup:g} min), end, max; slope after "
          f"warm-up of each {args.adapt_every:g}-min interval's lowest sample ({n_windows} "
          f"intervals: the verdict), and of all {len(warm)} samples")
    for e in NODES:
        lows: dict[int, tuple[float, float]] = {}
        for t, row in warm:
            k = int(t // window)
            if k not in lows or row[e] < lows[k][1]:
                lows[k] = (t, row[e])
        points = sorted(lows.values())
        slope = slope_mb_per_min([p[0] for p in points], [p[1] for p in points])
        every = slope_mb_per_min([s[0] for s in warm], [s[1][e] for s in warm])
        first, w, last = samples[0][1][e], warm[0][1][e], samples[-1][1][e]
        peak = max(s[1][e] for s in samples)
        flat = n_windows >= 3 and slope <= args.max_slope   # a falling slope is not growth
        status |= not flat
        print(f"  {e:16} {first:8.1f} {w:8.1f} {last:8.1f} {peak:8.1f}   {slope:+6.2f} MB/min "
              f"(all samples {every:+6.2f})  "
              f"{'flat' if flat else 'GROWING' if n_windows >= 3 else 'too short to tell'}")
    print(f"{counts['features']} utterances transcribed ({counts['corrected']} corrected), "
          f"{counts['responses']} responses, "
          f"{counts['updates']} projector updates; Adapt calls: {'; '.join(adapts) or 'none'}")
    if refusals:
        print(f"{len(refusals)} correction(s) refused, e.g. {refusals[0]!r}")
    ended = [line[line.index("adaptation "):] for line in graph.log("adaptation_node").splitlines()
             if "adaptation " in line and " for 'soak' " in line]
    print(f"{len(ended)} adaptation job(s) ended:")
    for line in ended:
        print(f"  {line[:400]}")
    return status


if __name__ == "__main__":
    sys.exit(main())
