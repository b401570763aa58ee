"""The single-process graph: the four nodes in one process, one executor.

    ros2 launch tinyalign_ros tinyalign.launch.py single_process:=true
    ros2 run tinyalign_ros graph_node --ros-args --params-file config/tinyalign.yaml

The same nodes, names, topics, services and parameters (config/tinyalign.yaml's per-node
sections) as the four-process graph. What changes: the response and adaptation nodes share one
loaded LLM (core.llm.shared_llm) and all four share one Python + torch runtime, most of the
memory on a small robot (docs/BENCHMARKS.md has both measured). What it costs: one crash stops
the whole graph; the adaptation node's ``nice`` and ``train_threads`` do not apply (both are per
process; torch threads follow the ASR and response nodes' settings), so training competes with
responses for the CPU; callbacks share one GIL (torch, CTranslate2 and DDS release it while they
work).
"""
from __future__ import annotations

from .adaptation_node import AdaptationNode
from .asr_node import AsrNode
from .capture_node import CaptureNode
from .common import run_nodes
from .response_node import ResponseNode


def main(args=None) -> int:
    # capture last: its file source starts playing once a subscriber exists, and nothing is
    # spun (so nothing is received) until every node is built and its models are loaded
    return run_nodes([AsrNode, ResponseNode, lambda: AdaptationNode(single_process=True),
                      CaptureNode], args, threads=8)


if __name__ == "__main__":
    raise SystemExit(main())
