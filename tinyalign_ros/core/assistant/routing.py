"""mode auto: which path answers a user.

The aligned path (projector -> LLM) serves a user only when that user's projector carries
proof that it is no worse than the cascade (transcript -> LLM) for them: the WER of both paths
on the same held-out utterances, written into the projector's metrics when it was validated
(adaptation: the user's held-out corrected utterances; the base: `make-base-projector`'s
held-out sentences). Anything else - no numbers, aligned worse - is answered by the cascade,
which is never worse than what the robot had before it learned anything.
"""
from __future__ import annotations

from dataclasses import dataclass

# the metrics names a projector's validation writes (core.learning.adapt, corpus.base)
ALIGNED_WER = "validation_aligned_wer"
CASCADE_WER = "validation_cascade_wer"
VALIDATION_UTTERANCES = "validation_utterances"


@dataclass(frozen=True)
class Route:
    path: str      # "aligned" or "cascade"
    reason: str    # one line, for the Response and the logs


def route(projector) -> Route:
    """The path that serves requests this ``projector`` (a user's, or the base) would read."""
    if projector is None:
        return Route("cascade", "no projector fits these features")
    metrics = projector.meta.metrics or {}
    aligned, cascade = metrics.get(ALIGNED_WER), metrics.get(CASCADE_WER)
    if aligned is None or cascade is None:
        return Route("cascade", f"projector {projector.version} was not validated against the "
                                f"cascade")
    n = metrics.get(VALIDATION_UTTERANCES, "?")
    numbers = f"aligned WER {aligned:.1%} vs cascade {cascade:.1%} on {n} held-out utterances"
    if aligned <= cascade:
        return Route("aligned", f"projector {projector.version}: {numbers}")
    return Route("cascade", f"projector {projector.version} loses: {numbers}")
