"""What every tinyalign_ros node shares: parameters declared from the settings dataclasses (live
ones applied, the rest refused), QoS profiles, the drop-oldest worker queue, diagnostics, and a
main() that starts and stops rclpy cleanly. Uses only API that ROS 2 Humble has.
"""
from __future__ import annotations

import queue
import sys
import threading

import numpy as np
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from tinyalign_ros.core.memory import release_memory  # noqa: F401 (the nodes import it here)
from tinyalign_ros.core.settings import parameters

# Raw microphone stream: best effort, like any sensor. Subscribers must use it too (a RELIABLE
# subscriber never connects to a BEST_EFFORT publisher, silently).
SENSOR_QOS = qos_profile_sensor_data
# The ASR node's side of it: still best effort (compatible with any audio publisher), but a deep
# queue (10 s of 50 ms chunks), so a busy moment in the node does not drop speech.
AUDIO_SUB_QOS = QoSProfile(depth=200, history=HistoryPolicy.KEEP_LAST,
                           reliability=ReliabilityPolicy.BEST_EFFORT,
                           durability=DurabilityPolicy.VOLATILE)
# Utterances, features, transcripts, responses: every message matters.
RELIABLE_QOS = QoSProfile(depth=20, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE)
# "Latest state" topics (audio info, projector updates): late joiners get the last message.
LATCHED_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Projector and recogniser updates: latched; the adaptation node keeps one message per user in
# its history (nodes/adaptation_node.py LatchedUpdates), so depth is the most users a late
# joiner learns of.
PROJECTOR_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                           reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


class NodeSettings:
    """A node's parameters, declared from its settings groups (core/settings.py: name, type,
    default and description all come from the config dataclasses).

    ``ros2 param set`` on a setting marked live takes effect through ``on_change`` (called with
    the changed names before the values are committed; a ValueError refuses the change); on any
    other setting it is refused with the reason, instead of reporting success and changing
    nothing.
    """

    def __init__(self, node, groups, on_change=None):
        from rcl_interfaces.msg import ParameterDescriptor

        self._node, self._groups, self.on_change = node, tuple(groups), on_change
        self._params = {p.name: p for p in parameters(self._groups)}
        for p in self._params.values():
            live = " [live: ros2 param set takes effect]" if p.live else ""
            node.declare_parameter(p.name, p.default,
                                   ParameterDescriptor(description=p.description + live))
        self.values = {name: node.get_parameter(name).value for name in self._params}
        for group in self._groups:          # a bad value at start: a clear error, not later
            group.build(self.values)
        node.add_on_set_parameters_callback(self._on_set)

    def __getattr__(self, name):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def config(self, config_cls, **overrides):
        """The current values of one config class's settings, as an instance of it."""
        group = next((g for g in self._groups if g.config is config_cls), None)
        if group is None:
            raise KeyError(f"{config_cls.__name__} is not a settings group of this node")
        return group.build(self.values, **overrides)

    def _on_set(self, params):
        from rcl_interfaces.msg import SetParametersResult

        new = dict(self.values)
        for prm in params:
            spec = self._params.get(prm.name)
            if spec is None:
                continue                     # not one of ours (use_sim_time, ...)
            if not spec.live:
                return SetParametersResult(
                    successful=False, reason=f"{prm.name} is read when the node starts: "
                                             f"relaunch the node (or its parameter file) to "
                                             f"change it")
            new[prm.name] = prm.value
        changed = [n for n in self._params if new[n] != self.values[n]]
        try:
            for group in self._groups:
                group.build(new)             # choices and value checks of the dataclasses
            if changed and self.on_change is not None:
                self.on_change(changed, new)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.values = new
        if changed:
            self._node.get_logger().info("set " + ", ".join(f"{n}={new[n]!r}" for n in changed))
        return SetParametersResult(successful=True)


class DropOldestQueue:
    """A bounded queue served by one worker thread. When it is full the oldest waiting item is
    dropped: a robot should answer what was said last, not what queued up a while ago. An
    exception in ``handle`` is reported to ``on_error`` and never stops the worker."""

    def __init__(self, name: str, maxsize: int, handle, on_drop=None, on_error=None):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._handle, self._on_drop, self._on_error = handle, on_drop, on_error
        self._stop = threading.Event()
        self.dropped = 0
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def put(self, item) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    old = self._queue.get_nowait()
                except queue.Empty:
                    continue
                self.dropped += 1
                if self._on_drop is not None:
                    self._on_drop(old)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._handle(item)
            except Exception as exc:  # one bad item never kills the node
                if self._on_error is not None:
                    self._on_error(item, exc)

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout)


def update_fields(msg) -> tuple:
    """What a ProjectorUpdate's signature covers (core/signing.py)."""
    return (msg.user_id, msg.version, msg.parent_version, msg.header.stamp.sec,
            msg.header.stamp.nanosec, bytes(msg.checkpoint))


def recognizer_update_fields(msg) -> tuple:
    """What a RecognizerUpdate's signature covers: the kind first, so a projector update's
    signature never verifies as a recogniser update's (or the reverse)."""
    return ("recognizer", msg.user_id, msg.version, msg.parent_version, msg.header.stamp.sec,
            msg.header.stamp.nanosec, bytes(msg.adapter))


class UpdateVerifier:
    """Takes a signed, latched per-user update (projector or recogniser) only if it is signed
    with the shared key (read when first needed: the adaptation node may make it later) and
    newer than the last one taken for that user. The latched history re-sends the current
    updates (adaptation node, LatchedUpdates): a repeat of the last one is dropped silently,
    an older one is refused as a replay."""

    def __init__(self, node, kind: str, fields, key_file):
        self.node, self.kind, self.fields = node, kind, fields
        self.key_file = key_file            # () -> the key file parameter, read when needed
        self._key: bytes | None = None
        self._last: dict[str, tuple] = {}   # user -> stamp of the last update taken

    def accept(self, msg) -> bool:
        from tinyalign_ros.core.signing import SigningError, key_path, read_key, verify

        log = self.node.get_logger()
        try:
            if self._key is None:
                self._key = read_key(key_path(self.key_file()))
        except SigningError as exc:
            log.warning(f"ignoring {self.kind} update for {msg.user_id!r}: {exc}",
                        throttle_duration_sec=10.0)
            return False
        if not verify(self._key, bytes(msg.signature), *self.fields(msg)):
            log.warning(f"ignoring unsigned or forged {self.kind} update for {msg.user_id!r} "
                        f"(version {msg.version!r})")
            return False
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        last = self._last.get(msg.user_id, (-1, -1))
        if stamp == last:
            return False
        if stamp < last:
            log.warning(f"ignoring a replayed {self.kind} update for {msg.user_id!r} "
                        f"(version {msg.version!r})")
            return False
        self._last[msg.user_id] = stamp
        return True


def features_to_msg(result, utterance_id: str, user_id: str, asr_model_id: str, **fields):
    """A SpeechFeatures message of one utterance's AsrResult (core.speech.asr), as the ASR node
    publishes it; ``fields``: the message's other fields (stamps, timings, audio)."""
    from tinyalign_ros.msg import SpeechFeatures

    msg = SpeechFeatures(utterance_id=utterance_id, user_id=user_id, frames=result.frames,
                         dim=result.dim, transcript=result.transcript.text,
                         confidence=float(result.transcript.confidence),
                         asr_model_id=asr_model_id, audio_duration_s=float(result.duration_s),
                         **fields)
    msg.data = result.features.reshape(-1)
    return msg


def features_from_msg(msg) -> np.ndarray:
    """A SpeechFeatures message's (frames, dim) float32 array; ValueError for empty, wrongly
    sized or non-finite data, so every node refuses bad features the same way."""
    data = np.asarray(msg.data, dtype=np.float32)
    if msg.frames == 0 or msg.dim == 0:
        raise ValueError("empty features")
    if data.size != msg.frames * msg.dim:
        raise ValueError(f"{data.size} values for {msg.frames} x {msg.dim} frames")
    if not np.all(np.isfinite(data)):
        raise ValueError("features hold NaN/inf values")
    return data.reshape(msg.frames, msg.dim)


def run(node_factory, args=None, threads: int = 2) -> int:
    """Standard node main: init, spin until Ctrl-C or shutdown, destroy, shutdown."""
    return run_nodes([node_factory], args, threads)


def run_nodes(node_factories, args=None, threads: int = 2) -> int:
    """Several nodes in one process, one executor (the single-process graph); ``run`` for one."""
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    rclpy.init(args=args if args is not None else sys.argv)
    nodes = []
    try:
        for factory in node_factories:
            nodes.append(factory())
        executor = MultiThreadedExecutor(num_threads=threads)
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in reversed(nodes):
            close = getattr(node, "close", None)
            if close:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


class ManagedModels:
    """Managed-node transitions (rclpy.lifecycle, in Humble, Jazzy and Kilted alike) for a node
    that loads models; mixed in before ``LifecycleNode``:

      configure   load and check the models (load_models); a failure leaves the node
                  unconfigured, alive, with the reason logged and in diagnostics
      activate    serve (``self.active``; lifecycle publishers start publishing)
      deactivate  stop serving; work in flight finishes or is cancelled (stop_serving)
      cleanup     free the models (free_models), memory back to the system
      shutdown    from any state

    ``autostart`` configures and activates at start; with it off a lifecycle manager (or
    ``ros2 lifecycle set``) drives the transitions. Subclasses hold ``self.models_lock`` while
    they use the models, so a transition waits for the work in flight instead of breaking it.
    """

    def init_lifecycle(self, autostart: bool) -> None:
        self.models_lock = threading.RLock()
        self.active = False
        self._set_state("unconfigured")
        if autostart:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()
        else:
            self.get_logger().info("unconfigured (autostart false): waiting for a lifecycle "
                                   f"manager, e.g. `ros2 lifecycle set {self.get_name()} "
                                   "configure`")

    @property
    def state(self) -> str:
        return self._state

    def _set_state(self, state: str, level: int = 0, why: str = "") -> None:
        self._state = state
        diag = getattr(self, "diag", None)
        if diag is not None:
            diag.set(level, why or state, lifecycle_state=state)

    def inactive_reason(self) -> str:
        """Why a request is refused now ('' when the node is active)."""
        if self.active:
            return ""
        how = "activate" if self._state == "inactive" else "configure and activate"
        return f"the {self.get_name()} node is {self._state}: {how} it first"

    # hooks for subclasses
    def stop_serving(self) -> None:
        """Deactivation: finish or cancel the work in flight (default: nothing to do)."""

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            with self.models_lock:
                self.load_models()
        except Exception as exc:   # a missing model folder must not kill the node
            self.get_logger().error(f"configure failed, staying unconfigured: "
                                    f"{type(exc).__name__}: {exc}")
            with self.models_lock:
                self.free_models()
            self._set_state("unconfigured", 2, f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._set_state("inactive")
        self.get_logger().info("configured: models loaded")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.active = True
        self._set_state("active")
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.active = False
        self.stop_serving()
        with self.models_lock:        # waits for the request in flight
            pass
        self._set_state("inactive")
        self.get_logger().info("deactivated: not serving")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._free()
        self._set_state("unconfigured")
        self.get_logger().info("cleaned up: models freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        if self.active:
            self.active = False
            self.stop_serving()
        self._free()
        self._set_state("finalized")
        return TransitionCallbackReturn.SUCCESS

    def _free(self) -> None:
        with self.models_lock:
            self.free_models()
        release_memory()


class Diagnostics:
    """Publishes one DiagnosticStatus for a node on /diagnostics at a fixed period."""

    def __init__(self, node, period_s: float = 2.0):
        from diagnostic_msgs.msg import DiagnosticArray

        self._node = node
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.level, self.message, self.values = 0, "starting", {}
        node.create_timer(period_s, self.publish)

    def set(self, level: int, message: str, **values) -> None:
        self.level, self.message = level, message
        self.values.update({k: str(v) for k, v in values.items()})

    def publish(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        status = DiagnosticStatus(level=bytes([self.level]),
                                  name=f"tinyalign_ros: {self._node.get_fully_qualified_name()}",
                                  message=self.message, hardware_id="tinyalign_ros")
        status.values = [KeyValue(key=k, value=v) for k, v in sorted(self.values.items())]
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(arr)
