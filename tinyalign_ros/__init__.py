"""tinyalign_ros: a voice assistant for ROS 2 robots that adapts to its users' speech (Tiny-Align).

Subpackages: ``core`` (the machine-learning pipeline, no ROS), ``nodes`` (thin rclpy nodes),
and, once the package is built with colcon, the generated interfaces ``msg``, ``srv``, ``action``.
"""
# When this package is used from a source tree or a pip install while the interfaces come from a
# colcon install (or the other way round), both folders named tinyalign_ros are merged here so
# that `from tinyalign_ros.msg import SpeechFeatures` and `from tinyalign_ros import core` both work.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
