"""Adaptation node: logs every utterance, takes corrections, and retrains a user's projector
on request, publishing it only when it beats the current one.

Subscribes: speech_features (SpeechFeatures)
Publishes:  projector_updates (ProjectorUpdate, latched; the checkpoint bytes travel in the
            message, so the response node may run on another host)
Services:   adapt (Adapt: starts a job, returns at once), correct_transcript, forget_user, rollback
Action:     adapt (Adapt: the same job with step/loss/validation-WER/ETA feedback and cancel)
"""
from __future__ import annotations

import os
import threading
import uuid

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode

from tinyalign_ros.core.assistant.checkpoint import CheckpointError, load_checkpoint
from tinyalign_ros.core.assistant.llm import EmbeddingTable, llm_id, loaded_llms, shared_llm
from tinyalign_ros.core.assistant.pipeline import Assistant
from tinyalign_ros.core.assistant.prompt import PromptConfig
from tinyalign_ros.core.learning.adapt import AdaptationError, AdaptConfig, adapt_user
from tinyalign_ros.core.learning.store import StoreConfig, StoreError, UtteranceStore
from tinyalign_ros.core.models import default_projector, resolve_llm
from tinyalign_ros.core.serving import AssistantModels, LearningConfig, Lifecycle
from tinyalign_ros.core.signing import create_key, key_path, signature
from tinyalign_ros.core.users import UserIdError, check_user_id
from tinyalign_ros.graph import node_settings
from tinyalign_ros.msg import Metric, ProjectorUpdate, SpeechFeatures
from tinyalign_ros.action import Adapt as AdaptAction
from tinyalign_ros.srv import Adapt, CorrectTranscript, ForgetUser, Rollback

from .common import (PROJECTOR_QOS, RELIABLE_QOS, Diagnostics, ManagedModels, NodeSettings,
                     features_from_msg, run, update_fields)


class AdaptationNode(ManagedModels, LifecycleNode):
    def __init__(self, single_process: bool = False):
        """``single_process``: the node shares its process with the others (graph_node), so
        the process-wide ``nice`` and ``train_threads`` are left alone."""
        super().__init__("adaptation")
        self.p = NodeSettings(self, node_settings("adaptation"))
        self.models = self.p.config(AssistantModels)
        learning = self.p.config(LearningConfig)
        self.single_process = single_process
        if single_process:
            self.get_logger().info("single-process graph: nice and train_threads do not apply "
                                   "(they are per process); the LLM is shared")
        else:
            if learning.nice > 0:
                os.nice(learning.nice)
            import torch
            torch.set_num_threads(max(1, learning.train_threads))
        self.diag = Diagnostics(self)
        # opened / loaded by configure
        self.store: UtteranceStore | None = None
        self.base = self.assistant = self.embeddings = None
        self._update_key = b""
        group = ReentrantCallbackGroup()
        # not a lifecycle publisher: forget_user and rollback must reach the response node
        # whatever this node's state
        self.update_pub = self.create_publisher(ProjectorUpdate, "projector_updates",
                                                 PROJECTOR_QOS)
        self.create_subscription(SpeechFeatures, "speech_features", self.on_features,
                                 RELIABLE_QOS, callback_group=group)
        self.create_service(Adapt, "adapt", self.on_adapt, callback_group=group)
        self.create_service(CorrectTranscript, "correct_transcript", self.on_correct,
                            callback_group=group)
        self.create_service(ForgetUser, "forget_user", self.on_forget, callback_group=group)
        self.create_service(Rollback, "rollback", self.on_rollback, callback_group=group)
        self.action = ActionServer(self, AdaptAction, "adapt", self.execute_goal,
                                   goal_callback=self.on_goal,
                                   cancel_callback=lambda _: CancelResponse.ACCEPT,
                                   callback_group=group)
        self._job_lock = threading.Lock()   # one training job at a time
        self._job_cancel: threading.Event | None = None
        self._deactivating = False
        self.logged = 0
        self.init_lifecycle(self.p.config(Lifecycle).autostart)

    def load_models(self) -> None:
        llm_model_id = llm_id(resolve_llm(self.models.llm_model or None))
        base_path = self.models.projector or default_projector()
        if not base_path:
            raise RuntimeError("the adaptation node needs a base projector to start from "
                               "(set the projector parameter)")
        self.base = load_checkpoint(base_path, None, llm_model_id)
        self.store = UtteranceStore.from_config(self.p.config(StoreConfig))
        self._update_key = create_key(key_path(self.p.update_key_file))
        # shared_llm: in the single-process graph this is the response node's copy
        llm = shared_llm(self.models.llm_model or None, self.models.device)
        self.assistant = Assistant(llm, self.p.config(PromptConfig), self.p.max_new_tokens)
        self.embeddings = EmbeddingTable.from_llm(llm)   # not a second copy of the table
        self.get_logger().info(f"store {self.store.root}; base projector {self.base.version}; "
                               f"LLM {llm.model_id} on {llm.device} ({loaded_llms()} LLM(s) "
                               f"loaded in this process)")
        self._republish_current()

    def free_models(self) -> None:
        self.assistant = self.embeddings = self.base = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def stop_serving(self) -> None:
        """Deactivation: the training job in flight is cancelled (and reported so)."""
        cancel = self._job_cancel
        if cancel is not None and self._job_lock.locked():
            self._deactivating = True
            cancel.set()
            self.get_logger().warning("deactivating: cancelling the adaptation job in flight")

    def _store_or_refusal(self):
        """(store, '') when the log is open, else (None, why not)."""
        store = self.store
        if store is None:
            return None, f"the adaptation node is {self.state}: configure it first"
        return store, ""

    # ---- logging and corrections
    def on_features(self, msg: SpeechFeatures) -> None:
        store = self.store
        if not self.p.log_utterances or not self.active or store is None:
            return
        try:
            check_user_id(msg.user_id)
            store.log(msg.utterance_id, msg.user_id, features_from_msg(msg),
                           msg.transcript, msg.confidence, msg.asr_model_id)
            self.logged += 1
        except (ValueError, UserIdError, StoreError, OSError) as exc:
            self.get_logger().warning(f"not logging {msg.utterance_id!r}: {exc}")

    def on_correct(self, req, res):
        store, why = self._store_or_refusal()
        if store is None:
            res.success, res.message = False, why
            return res
        try:
            store.correct(req.user_id, req.utterance_id, req.text)
            res.success, res.message = True, "corrected"
        except (StoreError, UserIdError) as exc:
            res.success, res.message = False, str(exc)
        return res

    def on_forget(self, req, res):
        store, why = self._store_or_refusal()
        if store is None:
            res.success, res.message = False, why
            return res
        try:
            n_utt, n_proj = store.forget(req.user_id)
        except UserIdError as exc:
            res.success, res.message = False, str(exc)
            return res
        self._publish(req.user_id, None)
        res.success, res.utterances_deleted, res.projectors_deleted = True, n_utt, n_proj
        res.message = f"deleted {n_utt} utterances and {n_proj} projectors of {req.user_id!r}"
        self.get_logger().info(res.message)
        return res

    def on_rollback(self, req, res):
        store, why = self._store_or_refusal()
        if store is None:
            res.success, res.message = False, why
            return res
        try:
            parent = store.rollback(req.user_id)
        except (StoreError, UserIdError) as exc:
            res.success, res.message = False, str(exc)
            return res
        self._publish(req.user_id, parent)
        res.success = True
        res.version = parent.version if parent else ""
        res.message = f"{req.user_id!r} now on {res.version or 'the base projector'}"
        return res

    # ---- projector updates
    def _publish(self, user_id: str, record, data: bytes | None = None, meta=None) -> None:
        msg = ProjectorUpdate(user_id=user_id)
        msg.header.stamp = self.get_clock().now().to_msg()
        if record is not None:
            data = data or record.path.read_bytes()
            msg.version, msg.parent_version = record.version, record.parent_version
            msg.path = str(record.path)
            msg.metrics = [Metric(name=k, value=float(v)) for k, v in record.metrics.items()
                           if isinstance(v, (int, float))]
        if data:
            msg.checkpoint = data
        msg.signature = signature(self._update_key, *update_fields(msg))
        self.update_pub.publish(msg)

    def _republish_current(self) -> None:
        """Latched topic: announce every user's current projector again after a restart."""
        for user_id in self.store.users():
            record = self.store.current_projector(user_id)
            if record is not None and record.path.is_file():
                self._publish(user_id, record)

    # ---- training jobs
    def _config(self, req) -> AdaptConfig:
        """The node's recipe (its live parameters, read now) with the request's overrides."""
        overrides = {}
        if req.objective:
            overrides["objective"] = req.objective
        if req.epochs > 0:
            overrides["epochs"] = req.epochs
        if req.max_utterances > 0:
            overrides["max_utterances"] = req.max_utterances
        if req.pseudo_labels == req.PSEUDO_LABELS_ON:
            overrides["use_pseudo_labels"] = True
        elif req.pseudo_labels == req.PSEUDO_LABELS_OFF:
            overrides["use_pseudo_labels"] = False
        elif req.pseudo_labels != req.PSEUDO_LABELS_DEFAULT:
            raise ValueError(f"pseudo_labels must be 0 (node default), 1 (on) or 2 (off), got "
                             f"{req.pseudo_labels}")
        return self.p.config(AdaptConfig, **overrides)

    def _current(self, user_id: str):
        record = self.store.current_projector(user_id)
        if record is None:
            return self.base
        try:
            return load_checkpoint(record.path, None, self.base.meta.llm_model_id)
        except CheckpointError as exc:
            self.get_logger().error(f"{user_id}'s projector unusable ({exc}); starting from base")
            return self.base

    def _run_job(self, job_id: str, user_id: str, config: AdaptConfig, progress=None,
                 cancel=None):
        cancel = cancel or threading.Event()
        with self._job_lock, self.models_lock:
            if not self.active or self.assistant is None:
                return None, self.inactive_reason()
            self._job_cancel, self._deactivating = cancel, False
            prompt = self.p.config(PromptConfig)
            if prompt != self.assistant.prompt.config:   # task or hint changed live
                self.assistant.set_prompt(prompt)
            self.assistant.max_new_tokens = self.p.max_new_tokens
            self.diag.set(0, f"adapting {user_id}", job=job_id)
            try:
                result = adapt_user(self.store, user_id, self._current(user_id), self.assistant,
                                    self.embeddings, self.base.meta.asr_model_id, config,
                                    progress, cancel)
            except (AdaptationError, StoreError, ValueError) as exc:
                if self._deactivating:
                    exc = "cancelled: the node was deactivated; the current projector is kept"
                self.get_logger().error(f"adaptation {job_id} for {user_id!r} failed: {exc}")
                return None, str(exc)
            finally:
                self._job_cancel = None
            if not result.success and self._deactivating:
                message = "cancelled: the node was deactivated; the current projector is kept"
                self.get_logger().warning(f"adaptation {job_id} for {user_id!r}: {message}")
                return result, message
            if result.published:
                self._publish(user_id, self.store.current_projector(user_id), result.checkpoint)
            self.get_logger().info(f"adaptation {job_id} for {user_id!r}: {result.message}")
            self.diag.set(0, self.state, last_job=job_id)
            return result, result.message

    def on_adapt(self, req, res):
        try:
            check_user_id(req.user_id)
            config = self._config(req)
        except (UserIdError, ValueError) as exc:
            res.accepted, res.message = False, str(exc)
            return res
        if self._job_lock.locked():
            res.accepted, res.message = False, "a training job is already running; try later"
            return res
        if not self.active:
            res.accepted, res.message = False, self.inactive_reason()
            return res
        job_id = uuid.uuid4().hex[:8]
        threading.Thread(target=self._run_job, args=(job_id, req.user_id, config),
                         daemon=True).start()
        res.accepted, res.job_id = True, job_id
        res.message = f"adapting {req.user_id!r} in the background (job {job_id})"
        return res

    def on_goal(self, goal):
        try:
            check_user_id(goal.user_id)
        except UserIdError as exc:
            self.get_logger().error(f"adapt goal refused: {exc}")
            return GoalResponse.REJECT
        return GoalResponse.REJECT if self._job_lock.locked() else GoalResponse.ACCEPT

    def execute_goal(self, goal_handle):
        req = goal_handle.request
        cancel = threading.Event()
        job_id = uuid.uuid4().hex[:8]
        last_wer = [-1.0]   # the action's "no validation yet" value

        def progress(p):
            if goal_handle.is_cancel_requested:
                cancel.set()
            if "validation_wer" in p:    # WER of the current, then of the new projector
                last_wer[0] = float(p["validation_wer"])
            fb = AdaptAction.Feedback(stage=p.get("stage", ""), step=int(p.get("step", 0)),
                                      total_steps=int(p.get("total_steps", 0)),
                                      loss=float(p.get("loss", 0.0)),
                                      validation_wer=last_wer[0], eta_s=float(p.get("eta_s", 0)))
            goal_handle.publish_feedback(fb)

        out = AdaptAction.Result()
        try:
            config = self._config(req)
        except ValueError as exc:
            goal_handle.abort()
            out.message = str(exc)
            return out
        result, message = self._run_job(job_id, req.user_id, config, progress, cancel)
        out.message = message
        if result is None or not result.success:
            if cancel.is_set() and goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
            return out
        out.success, out.published, out.version = True, result.published, result.version
        out.metrics = [Metric(name=k, value=float(v)) for k, v in result.metrics.items()]
        goal_handle.succeed()
        return out

    def close(self) -> None:
        with self.models_lock:
            self.free_models()


def main(args=None) -> int:
    return run(AdaptationNode, args, threads=4)


if __name__ == "__main__":
    raise SystemExit(main())
