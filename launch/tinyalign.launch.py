"""Starts the tinyalign_ros graph.

    ros2 launch tinyalign_ros tinyalign.launch.py
    ros2 launch tinyalign_ros tinyalign.launch.py audio_source:=file audio_file:=/path/to/wavs user_id:=alice
    ros2 launch tinyalign_ros tinyalign.launch.py single_process:=true   # one process, one LLM

The node set and the launch arguments come from tinyalign_ros/graph.py; every parameter is in
config/tinyalign.yaml (override the whole file with params_file:=...).
"""
import os
import tempfile

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from tinyalign_ros.graph import CONFIG_FILE, LAUNCH_ARGUMENTS, NODES, SINGLE_PROCESS_EXECUTABLE


def _value(text: str):
    """A launch argument as a parameter value: typed like YAML, '' stays a string."""
    value = yaml.safe_load(text) if text.strip() else ""
    return "" if value is None else value


def _nodes(context):
    namespace = LaunchConfiguration("namespace")
    params_file = LaunchConfiguration("params_file").perform(context)
    if LaunchConfiguration("single_process").perform(context).lower() not in ("true", "1"):
        nodes = []
        for spec in NODES:
            overrides = {a.sets[spec.name]: LaunchConfiguration(a.name)
                         for a in LAUNCH_ARGUMENTS if spec.name in a.sets}
            nodes.append(Node(
                package="tinyalign_ros", executable=spec.executable, name=spec.name,
                namespace=namespace, output="screen", emulate_tty=True,
                parameters=[params_file, overrides]))
        return nodes
    # one process: the per-node sections of one file (a node name remap would rename all four)
    with open(params_file) as f:
        params = yaml.safe_load(f) or {}
    for spec in NODES:
        section = params.setdefault(spec.name, {}).setdefault("ros__parameters", {})
        for a in LAUNCH_ARGUMENTS:
            if spec.name in a.sets:
                section[a.sets[spec.name]] = _value(LaunchConfiguration(a.name).perform(context))
    merged = tempfile.NamedTemporaryFile("w", prefix="tinyalign_graph_", suffix=".yaml",
                                         delete=False)
    with merged:
        yaml.safe_dump(params, merged)
    return [Node(package="tinyalign_ros", executable=SINGLE_PROCESS_EXECUTABLE,
                 namespace=namespace, output="screen", emulate_tty=True,
                 parameters=[merged.name])]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("tinyalign_ros"), "config",
                                  CONFIG_FILE)
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of all nodes"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML file with the parameters of every node"),
        DeclareLaunchArgument("single_process", default_value="false",
                              description="true: the four nodes in one process sharing one "
                                          "LLM (less memory; see graph_node)"),
    ] + [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in LAUNCH_ARGUMENTS]
    return LaunchDescription(arguments + [OpaqueFunction(function=_nodes)])
