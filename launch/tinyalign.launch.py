"""Starts the tinyalign_ros graph.

    ros2 launch tinyalign_ros tinyalign.launch.py
    ros2 launch tinyalign_ros tinyalign.launch.py audio_source:=file audio_file:=/path/to/wavs user_id:=alice

The node set and the launch arguments come from tinyalign_ros/graph.py; every parameter is in
config/tinyalign.yaml (override the whole file with params_file:=...).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from tinyalign_ros.graph import CONFIG_FILE, LAUNCH_ARGUMENTS, NODES


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("tinyalign_ros"), "config",
                                  CONFIG_FILE)
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of all nodes"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML file with the parameters of every node"),
    ] + [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in LAUNCH_ARGUMENTS]

    nodes = []
    for spec in NODES:
        overrides = {a.sets[spec.name]: LaunchConfiguration(a.name)
                     for a in LAUNCH_ARGUMENTS if spec.name in a.sets}
        nodes.append(Node(
            package="tinyalign_ros", executable=spec.executable, name=spec.name,
            namespace=LaunchConfiguration("namespace"), output="screen", emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"), overrides]))
    return LaunchDescription(arguments + nodes)
