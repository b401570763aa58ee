"""Thin rclpy nodes over tinyalign_ros.core. Each ``*_node.py`` is one executable."""
