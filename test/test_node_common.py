"""What every node shares: the drop-oldest worker queue."""
import threading
import time

import pytest

pytestmark = pytest.mark.ros   # nodes.common imports rclpy


def test_drop_oldest_queue_keeps_the_newest_and_survives_a_failing_item():
    from tinyalign_ros.nodes.common import DropOldestQueue

    release, handled, dropped, errors = threading.Event(), [], [], []

    def handle(item):
        if item == "first":
            release.wait(5)           # the worker is busy while the queue fills
        if item == "bad":
            raise ValueError("one bad item")
        handled.append(item)

    q = DropOldestQueue("test", 2, handle, on_drop=dropped.append,
                        on_error=lambda item, exc: errors.append((item, str(exc))))
    q.put("first")
    time.sleep(0.3)                   # the worker has taken "first" and waits
    for item in ("a", "b", "bad", "c"):
        q.put(item)
    release.set()
    deadline = time.monotonic() + 5
    while len(handled) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    q.close()
    assert dropped == ["a", "b"] and q.dropped == 2          # the oldest waiting ones went
    assert handled == ["first", "c"]                          # the worker outlived "bad"
    assert errors == [("bad", "one bad item")]
