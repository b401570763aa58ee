"""Shared fixtures: real rclpy in the test process, node executables as real processes."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The colcon install folder: ./install (ROS 2 Kilted, `make test`) unless TINYALIGN_INSTALL names
# another, e.g. ./install-jazzy (scripts/env.sh sets it for the distribution it sources).
INSTALL = Path(os.environ.get("TINYALIGN_INSTALL") or ROOT / "install") / "tinyalign_ros"
LIB_DIR = INSTALL / "lib" / "tinyalign_ros"
SHARE_DIR = INSTALL / "share" / "tinyalign_ros"
SPEECH = Path("/usr/share/pocketsphinx/test/data")
GOFORWARD = SPEECH / "goforward.raw"          # "go forward ten meters", 16 kHz s16le
LIBRIVOX = SPEECH / "librivox"

# One DDS domain per test run, discovery on this host only: parallel runs never cross-talk.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(30, 99)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")


def librivox_references() -> dict[str, str]:
    refs = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        text, _, utt = line.rpartition("(")
        refs[utt.strip(") ")] = text.replace("<s>", "").replace("</s>", "").strip()
    return refs


@pytest.fixture(scope="session")
def installed():
    """The colcon install must exist: `make test` builds it first."""
    if not (INSTALL / "share" / "tinyalign_ros" / "package.xml").is_file():
        pytest.fail(f"{INSTALL} is missing: run `make setup` (colcon build) before the tests")
    return INSTALL


@pytest.fixture(scope="session")
def rclpy_context(installed):
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.shutdown()


@pytest.fixture
def ros_node(rclpy_context):
    node = rclpy_context.create_node(f"test_{random.randint(0, 1 << 30)}")
    yield node
    node.destroy_node()


def spin_until(node, predicate, timeout: float, procs=()) -> bool:
    """Spin the test node until predicate() or timeout; fail early if a node process died."""
    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
        if predicate():
            return True
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{p.name} exited with {p.returncode}:\n{p.output()}")
    return predicate()


def call_service(node, client, request, procs=(), timeout: float = 30, resend_after=None):
    """Call ``client``'s service from the test node and return the response; fail with the
    service's name (and early, with its output, if a node process died).

    ``resend_after`` (seconds; idempotent requests only, e.g. the parameter services): send the
    request again when no reply came in that time. A server can be seen as ready a moment before
    its reply writer has matched this client, and a request sent then is never answered
    (ros2/rclcpp#625); a one-off lost call would otherwise fail a test after its whole timeout."""
    assert spin_until(node, client.service_is_ready, timeout, procs), \
        f"{client.srv_name}: no server within {timeout} s"
    deadline = time.monotonic() + timeout
    while True:
        future = client.call_async(request)
        wait = min(resend_after or timeout, deadline - time.monotonic())
        if spin_until(node, future.done, max(wait, 0.0), procs):
            return future.result()
        client.remove_pending_request(future)
        if time.monotonic() >= deadline:
            raise AssertionError(f"{client.srv_name}: no reply within {timeout} s")


class NodeProcess:
    """A node executable from lib/tinyalign_ros, started as its own process."""

    def __init__(self, executable: str, params: dict, log_dir: Path, params_file=None):
        self.name = executable
        self.log_path = log_dir / f"{executable}.log"
        cmd = [str(LIB_DIR / executable), "--ros-args"]
        if params_file is not None:
            cmd += ["--params-file", str(params_file)]
        for k, v in params.items():
            cmd += ["-p", f"{k}:={v}"]
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def poll(self):
        return self.proc.poll()

    @property
    def returncode(self):
        return self.proc.returncode

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.poll() is not None:
                return text in self.output()
            time.sleep(0.2)
        return False

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_node(installed, tmp_path):
    procs = []

    def start(executable: str, params_file=None, **params) -> NodeProcess:
        p = NodeProcess(executable, params, tmp_path, params_file)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


def python_subprocess(script: Path, *args, **kw):
    return subprocess.Popen([sys.executable, str(script), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory):
    """A random 2-layer Llama with the default LLM's tokenizer (its weights are not needed):
    the small random model of the core unit tests."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tinyalign_ros.core.models import resolve_llm

    tok = AutoTokenizer.from_pretrained(str(resolve_llm()))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
                      bos_token_id=tok.bos_token_id)
    out = tmp_path_factory.mktemp("tiny-llm")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out
