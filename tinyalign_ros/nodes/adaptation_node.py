"""Adaptation node: logs every utterance (features, transcript and audio), takes corrections,
and on request retrains a user's projector, recogniser (a LoRA on Whisper's decoder) or both
(``target``), publishing each only when it beats what the user has.

Subscribes: speech_features (SpeechFeatures)
Publishes:  projector_updates (ProjectorUpdate, latched; the checkpoint bytes travel in the
            message, so the response node may run on another host), recognizer_updates
            (RecognizerUpdate, latched, signed the same way; the ASR node serves them)
Services:   adapt (Adapt: starts a job, returns at once), correct_transcript, forget_user, rollback
Action:     adapt (Adapt: the same job with step/loss/validation-WER/ETA feedback and cancel)
"""
from __future__ import annotations

import gc
import os
import threading
import time
import uuid

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode

from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
from tinyalign_ros.core.assistant.llm import EmbeddingTable, llm_id, loaded_llms, shared_llm
from tinyalign_ros.core.assistant.pipeline import Assistant
from tinyalign_ros.core.assistant.prompt import PromptConfig
from tinyalign_ros.core.learning.adapt import (TARGETS, AdaptationError, AdaptConfig,
                                               AdaptResult, adapt_user, adapt_user_recognizer,
                                               redecoded_hints)
from tinyalign_ros.core.learning.store import (StoreConfig, StoreError, UtteranceStore,
                                               check_audio_samples)
from tinyalign_ros.core.models import default_projector, resolve_llm
from tinyalign_ros.core.serving import AssistantModels, LearningConfig, Lifecycle
from tinyalign_ros.core.signing import create_key, key_path, signature
from tinyalign_ros.core.users import UserIdError, check_user_id
from tinyalign_ros.graph import node_settings
from tinyalign_ros.msg import Metric, ProjectorUpdate, RecognizerUpdate, SpeechFeatures
from tinyalign_ros.action import Adapt as AdaptAction
from tinyalign_ros.srv import Adapt, CorrectTranscript, ForgetUser, Rollback

from .common import (PROJECTOR_QOS, RELIABLE_QOS, Diagnostics, ManagedModels, NodeSettings,
                     features_from_msg, recognizer_update_fields, release_memory, run,
                     update_fields)


class LatchedUpdates:
    """A latched topic of per-user updates whose history holds each user's current message and
    nothing older. DDS keeps the last ``depth`` messages of an unkeyed topic, payloads included,
    so a user adapted 100 times would pin 100 checkpoints; instead, when a user's update
    replaces one already sent, the publisher is made anew and re-sends each user's current
    message, which subscribers that have it already drop as a repeat (same stamp)."""

    def __init__(self, node, msg_type, topic: str):
        self.node, self.msg_type, self.topic = node, msg_type, topic
        self.pub = node.create_publisher(msg_type, topic, PROJECTOR_QOS)
        self.current: dict = {}
        self._lock = threading.Lock()

    def announce(self, msg) -> None:
        with self._lock:
            replaces = msg.user_id in self.current
            self.current[msg.user_id] = msg
            if not replaces:
                self.pub.publish(msg)
                return
            self.node.destroy_publisher(self.pub)
            self.pub = self.node.create_publisher(self.msg_type, self.topic, PROJECTOR_QOS)
            for current in self.current.values():
                self.pub.publish(current)


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
        # not lifecycle publishers: forget_user and rollback must reach the response and ASR
        # nodes whatever this node's state; each user's current update only (LatchedUpdates)
        self.projector_updates = LatchedUpdates(self, ProjectorUpdate, "projector_updates")
        self.recognizer_updates = LatchedUpdates(self, RecognizerUpdate, "recognizer_updates")
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
        # One training job at a time: whoever accepts a job (on_adapt, on_goal) takes the lock
        # without waiting, in the same step as the check, and the job releases it when it ends.
        self._job_lock = threading.Lock()
        self._job: tuple[str, str] | None = None          # (job id, user) of the job in flight
        self._job_cancel: threading.Event | None = None
        self._cancel_reason = ""      # why the job in flight was cancelled (deactivate, forget)
        # a store change and the projector update that announces it, one at a time: a job's
        # update can never follow (and so undo) a rollback or forget-user of its user
        self._user_lock = threading.Lock()
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
        self._recover()
        self._update_key = create_key(key_path(self.p.update_key_file))
        # shared_llm: in the single-process graph this is the response node's copy
        llm = shared_llm(self.models.llm_model or None, self.models.device)
        self.assistant = Assistant(llm, self.p.config(PromptConfig), self.p.max_new_tokens,
                                   self.p.max_repeats, self.p.audio_only_tokens)
        self.embeddings = EmbeddingTable.from_llm(llm)   # not a second copy of the table
        self.get_logger().info(f"store {self.store.root}; base projector {self.base.version}; "
                               f"LLM {llm.model_id} on {llm.device} ({loaded_llms()} LLM(s) "
                               f"loaded in this process)")
        self._republish_current()

    def _recover(self) -> None:
        """Jobs the last process left running (killed mid-training) are reported abandoned."""
        abandoned, removed = self.store.recover()
        for job in abandoned:
            self.get_logger().warning(
                f"adaptation job {job.job_id} for {job.user_id!r} (started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(job.started))}) was "
                f"abandoned: the node stopped while it ran; the current projector is kept")
        if removed:
            self.get_logger().warning(f"removed {len(removed)} temporary file(s) of writes "
                                      f"that were interrupted")
        if abandoned:
            self.diag.set(1, "abandoned adaptation jobs found at start",
                          abandoned_jobs=", ".join(f"{j.job_id} ({j.user_id})"
                                                   for j in abandoned))

    def free_models(self) -> None:
        self.assistant = self.embeddings = self.base = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def stop_serving(self) -> None:
        """Deactivation: the training job in flight is cancelled (and reported so)."""
        cancel = self._job_cancel
        if cancel is not None and self._job_lock.locked():
            self._cancel_reason = DEACTIVATED
            cancel.set()
            self.get_logger().warning("deactivating: cancelling the adaptation job in flight")

    def _cancel_user_job(self, user_id: str, why: str) -> None:
        """Rollback / forget-user: a job of that user in flight stops and stores nothing (the
        store refuses its projector too, should it be past training already)."""
        job, cancel = self._job, self._job_cancel
        if job is not None and job[1] == user_id and cancel is not None:
            self._cancel_reason = f"cancelled: {why}; nothing was stored"
            cancel.set()
            self.get_logger().warning(f"cancelling adaptation job {job[0]}: {why}")

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
            features = features_from_msg(msg)
        except (ValueError, UserIdError) as exc:
            self.get_logger().warning(f"not logging {msg.utterance_id!r}: {exc}")
            return
        audio, rate = None, 0
        if len(msg.audio) > 0:       # the utterance's audio, for recogniser adaptation
            audio, rate = np.asarray(msg.audio, np.int16), int(msg.audio_sample_rate)
            try:
                check_audio_samples(audio, rate)
            except StoreError as exc:    # the features are still worth logging
                self.get_logger().warning(f"not keeping the audio of {msg.utterance_id!r}: "
                                          f"{exc}")
                audio = None
        try:
            store.log(msg.utterance_id, msg.user_id, features, msg.transcript, msg.confidence,
                      msg.asr_model_id, audio=audio, sample_rate=rate or 16000)
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
            check_user_id(req.user_id)
            self._cancel_user_job(req.user_id, f"{req.user_id!r} was forgotten meanwhile")
            with self._user_lock:
                n_utt, n_proj, n_rec = store.forget(req.user_id)
                self._publish(req.user_id, None)
                self._publish_recognizer(req.user_id, None)
        except (UserIdError, StoreError) as exc:
            res.success, res.message = False, str(exc)
            return res
        res.success, res.utterances_deleted, res.projectors_deleted = True, n_utt, n_proj
        res.recognizers_deleted = n_rec
        res.message = (f"deleted {n_utt} utterances (features and audio), {n_proj} projectors "
                       f"and {n_rec} recogniser adapters of {req.user_id!r}")
        self.get_logger().info(res.message)
        return res

    def on_rollback(self, req, res):
        store, why = self._store_or_refusal()
        if store is None:
            res.success, res.message = False, why
            return res
        target = req.target or "projector"
        try:
            check_user_id(req.user_id)
            if target not in TARGETS:
                raise StoreError(f"target must be '' or one of {', '.join(TARGETS)}, got "
                                 f"{target!r}")
            kinds = ("projector", "recognizer") if target == "both" else (target,)
            if target == "both":   # each kind that has an adapted version
                kinds = tuple(k for k in kinds if store.current_version(k, req.user_id))
                if not kinds:
                    raise StoreError(f"user {req.user_id!r} has no adapted projector or "
                                     f"recognizer to roll back")
            self._cancel_user_job(req.user_id, f"{req.user_id!r} was rolled back meanwhile")
            done = []
            with self._user_lock:
                for kind in kinds:
                    parent = store.rollback(req.user_id, kind)
                    if kind == "projector":
                        self._publish(req.user_id, parent)
                        res.version = parent.version if parent else ""
                    else:
                        self._publish_recognizer(req.user_id, parent)
                        res.recognizer_version = parent.version if parent else ""
                    done.append(f"{parent.version if parent else 'the base ' + kind}")
        except (StoreError, UserIdError, OSError) as exc:
            res.success, res.message = False, str(exc)
            return res
        res.success = True
        res.message = f"{req.user_id!r} now on {' and '.join(done)}"
        return res

    # ---- projector updates
    def _publish(self, user_id: str, record, data: bytes | None = None) -> None:
        msg = ProjectorUpdate(user_id=user_id)
        msg.header.stamp = self.get_clock().now().to_msg()
        if record is not None:
            data = data or record.path.read_bytes()
            msg.version, msg.parent_version = record.version, record.parent_version
            msg.path = str(record.path)
            msg.metrics = metric_msgs(record.metrics)
        if data:
            msg.checkpoint = data
        msg.signature = signature(self._update_key, *update_fields(msg))
        self.projector_updates.announce(msg)

    def _publish_recognizer(self, user_id: str, record, data: bytes | None = None) -> None:
        """The user's current recogniser adapter (record None: back to the base recogniser)."""
        msg = RecognizerUpdate(user_id=user_id)
        msg.header.stamp = self.get_clock().now().to_msg()
        if record is not None:
            data = data or record.path.read_bytes()
            msg.version, msg.parent_version = record.version, record.parent_version
            msg.metrics = metric_msgs(record.metrics)
        if data:
            msg.adapter = data
        msg.signature = signature(self._update_key, *recognizer_update_fields(msg))
        self.recognizer_updates.announce(msg)

    def _republish_current(self) -> None:
        """Latched topics: announce every user's current projector and recogniser adapter
        again after a restart."""
        for user_id in self.store.users():
            record = self.store.current_projector(user_id)
            if record is not None and record.path.is_file():
                with self._user_lock:
                    self._publish(user_id, record)
            record = self.store.current_recognizer(user_id)
            if record is not None and record.path.is_file():
                with self._user_lock:
                    self._publish_recognizer(user_id, record)

    # ---- training jobs
    def _config(self, req) -> AdaptConfig:
        """The node's recipe (its live parameters, read now) with the request's overrides."""
        overrides = {}
        if req.target:
            if req.target not in TARGETS:
                raise ValueError(f"target must be '' (node default) or one of "
                                 f"{', '.join(TARGETS)}, got {req.target!r}")
            overrides["target"] = req.target
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
        except Exception as exc:   # CheckpointError, or torch refusing a tampered file
            self.get_logger().error(f"{user_id}'s projector unusable ({exc}); starting from base")
            return self.base

    def _busy(self) -> str:
        job = self._job
        who = f" (job {job[0]} for {job[1]!r})" if job else ""
        return f"a training job is already running{who}; one job at a time: try again when it ends"

    def _run_job(self, job_id: str, user_id: str, config: AdaptConfig, progress=None,
                 cancel=None):
        """Runs with ``_job_lock`` held (taken by on_adapt / on_goal) and releases it."""
        cancel = cancel or threading.Event()
        try:
            self._job, self._job_cancel, self._cancel_reason = (job_id, user_id), cancel, ""
            with self.models_lock:
                return self._train(job_id, user_id, config, progress, cancel)
        finally:
            self._job = self._job_cancel = None
            self._job_lock.release()
            release_memory()

    def _train(self, job_id: str, user_id: str, config: AdaptConfig, progress, cancel):
        if not self.active or self.assistant is None:
            return None, self.inactive_reason()
        prompt = self.p.config(PromptConfig)
        if prompt != self.assistant.prompt.config:   # task or hint changed live
            self.assistant.set_prompt(prompt)
        self.assistant.max_new_tokens = self.p.max_new_tokens
        self.assistant.max_repeats = self.p.max_repeats
        self.assistant.audio_only_tokens = self.p.audio_only_tokens
        try:
            self.store.start_job(job_id, user_id)
        except StoreError as exc:
            message = f"the job could not be recorded, not started: {exc}"
            self.get_logger().error(f"adaptation {job_id} for {user_id!r}: {message}")
            return None, message
        self.diag.set(0, f"adapting {user_id} ({config.target})", job=job_id,
                      job_state="running")
        result, state, notes, rec, hint = None, "failed", [], None, None
        try:
            if config.target in ("recognizer", "both"):
                try:
                    rec, hint = self._adapt_recognizer(job_id, user_id, config, progress,
                                                       cancel)
                    notes.append(rec.message)
                except (AdaptationError, StoreError, ValueError, OSError) as exc:
                    if config.target == "recognizer" or cancel.is_set():
                        raise
                    notes.append(f"recogniser not adapted: {exc}")
            if config.target == "recognizer":
                result = AdaptResult(rec.success, rec.published, rec.version, rec.message,
                                     dict(rec.metrics), recognizer_version=rec.version)
            elif rec is not None and not rec.success:     # cancelled in the recogniser step
                result = AdaptResult(False, False, message=rec.message)
            else:
                result = adapt_user(self.store, user_id, self._current(user_id),
                                    self.assistant, self.embeddings,
                                    self.base.meta.asr_model_id, config, progress, cancel,
                                    job_id=job_id, hint=hint)
                notes.append(result.message)
                if result.success and result.published:
                    self._publish_job_projector(user_id, result, notes)
                if rec is not None:
                    result.metrics.update(rec.metrics)
                    result.recognizer_version = rec.version
                    result.published = result.published or rec.published
            state = "done" if result.success else "cancelled"
            message = "; ".join(notes) if result.success else result.message
        except (AdaptationError, StoreError, ValueError, OSError) as exc:
            message = "; ".join(notes + [str(exc)])
        except Exception as exc:   # a bug must not leave the job "running" nor kill the node
            self.get_logger().error(f"adaptation {job_id} crashed: {exc!r}")
            message = f"{type(exc).__name__}: {exc}"
        finally:
            hint = rec = None         # the job's recogniser (~150 MB) goes with them
            gc.collect()
        if cancel.is_set() and state != "done":
            state, message = "cancelled", self._cancel_reason or message
        try:
            self.store.finish_job(job_id, state, message)
        except StoreError as exc:
            self.get_logger().warning(f"could not record the end of job {job_id}: {exc}")
        # (one call site per severity: rclpy refuses to change a call site's severity)
        text = f"adaptation {job_id} for {user_id!r} {'ended' if state == 'done' else state}: "
        if state == "done":
            self.get_logger().info(text + message)
        elif state == "cancelled":
            self.get_logger().warning(text + message)
        else:
            self.get_logger().error(text + message)
        self.diag.set(0, self.state, last_job=job_id, last_job_state=state)
        return result, message

    def _publish_job_projector(self, user_id: str, result, notes: list) -> None:
        with self._user_lock:   # not after (and so undoing) a rollback / forget-user
            record = self.store.current_projector(user_id)
            if record is not None and record.version == result.version:
                self._publish(user_id, record, result.checkpoint)
            else:
                result.published = False
                notes.append("projector not published: the user was rolled back or "
                             "forgotten meanwhile")

    def _adapt_recognizer(self, job_id: str, user_id: str, config: AdaptConfig, progress,
                          cancel):
        """The recogniser step of a job: (RecognizerResult, the projector's hint function or
        None). Whisper in torch is held for the job only (~150 MB for tiny.en) and goes when
        the job lets go of the hint function; in the single-process graph it is the ASR
        node's copy (shared_recognizer), loaded already if a user there has an adapter."""
        from tinyalign_ros.core.speech.whisper_decoder import shared_recognizer

        recognizer = shared_recognizer(config.whisper_model or None)
        rec = adapt_user_recognizer(self.store, user_id, recognizer, config, progress, cancel,
                                    job_id=job_id)
        if rec.success and rec.published:
            with self._user_lock:   # not after (and so undoing) a rollback / forget-user
                record = self.store.current_recognizer(user_id)
                if record is not None and record.version == rec.version:
                    self._publish_recognizer(user_id, record, rec.data)
                    self.get_logger().info(f"recogniser adapter {rec.version} published for "
                                           f"{user_id!r} ({len(rec.data)} bytes)")
                else:
                    rec.published = False
                    rec.message += ("; not published: the user was rolled back or forgotten "
                                    "meanwhile")
        hint = None
        if config.target == "both" and rec.success:
            hint = redecoded_hints(recognizer, rec, config.recognizer_beam_size, cancel)
        # the step's encoder states go (the hint keeps those it still needs), and the memory
        # its training freed goes back before the projector step, not at the end of the job
        rec.items = []
        release_memory()
        return rec, hint

    def on_adapt(self, req, res):
        try:
            check_user_id(req.user_id)
            config = self._config(req)
        except (UserIdError, ValueError) as exc:
            res.accepted, res.message = False, str(exc)
            return res
        if not self.active:
            res.accepted, res.message = False, self.inactive_reason()
            return res
        if not self._job_lock.acquire(blocking=False):   # check and take in one step
            res.accepted, res.message = False, self._busy()
            return res
        job_id = uuid.uuid4().hex[:8]
        self._job = (job_id, req.user_id)
        try:
            threading.Thread(target=self._run_job, args=(job_id, req.user_id, config),
                             daemon=True).start()
        except BaseException:
            self._job = None
            self._job_lock.release()
            raise
        res.accepted, res.job_id = True, job_id
        res.message = f"adapting {req.user_id!r} in the background (job {job_id})"
        res.message += self._last_abandoned(req.user_id)
        return res

    def _last_abandoned(self, user_id: str) -> str:
        store = self.store
        try:
            jobs = [j for j in store.jobs(user_id) if j.state != "running"] if store else []
        except Exception:   # informative only
            return ""
        if jobs and jobs[-1].state == "abandoned":
            return (f"; the previous job {jobs[-1].job_id} was abandoned (the node stopped "
                    f"while it ran)")
        return ""

    def on_goal(self, goal):
        try:
            check_user_id(goal.user_id)
        except UserIdError as exc:
            self.get_logger().error(f"adapt goal refused: {exc}")
            return GoalResponse.REJECT
        if not self._job_lock.acquire(blocking=False):   # released by execute_goal's job
            self.get_logger().warning(f"adapt goal for {goal.user_id!r} refused: {self._busy()}")
            return GoalResponse.REJECT
        self._job = ("(starting)", goal.user_id)
        return GoalResponse.ACCEPT

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
            self._job = None
            self._job_lock.release()
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
        out.recognizer_version = result.recognizer_version
        out.metrics = [Metric(name=k, value=float(v)) for k, v in result.metrics.items()]
        goal_handle.succeed()
        return out

    def close(self) -> None:
        with self.models_lock:
            self.free_models()


def metric_msgs(metrics: dict) -> list:
    """A store record's numeric metrics as Metric messages (the rest are left out)."""
    return [Metric(name=k, value=float(v)) for k, v in metrics.items()
            if isinstance(v, (int, float))]


DEACTIVATED = "cancelled: the node was deactivated; the current projector is kept"


def main(args=None) -> int:
    return run(AdaptationNode, args, threads=4)


if __name__ == "__main__":
    raise SystemExit(main())
