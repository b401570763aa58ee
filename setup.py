"""pip install of tinyalign_ros: the Python package (core, nodes, CLI) with console entry points.

The message/service/action classes come from the colcon (ament_cmake) build of the same
package; tinyalign_ros/__init__.py merges the two when both are on the path.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
NODES = sorted(p.stem for p in (HERE / "tinyalign_ros" / "nodes").glob("*_node.py"))

setup(
    name="tinyalign_ros",
    version="0.1.0",
    description="ROS 2 voice assistant that adapts to its users' speech (Tiny-Align)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["tinyalign_ros", "tinyalign_ros.*"]),
    package_data={"tinyalign_ros": ["data/*.safetensors", "data/*.json"]},
    data_files=[("share/tinyalign_ros/launch", ["launch/tinyalign.launch.py"]),
                ("share/tinyalign_ros/config", ["config/tinyalign.yaml"]),
                ("share/tinyalign_ros", ["package.xml"])],
    install_requires=["numpy", "pyyaml", "tqdm", "faster-whisper", "transformers", "peft",
                      "safetensors", "jiwer", "torch"],
    extras_require={"mic": ["pyaudio"]},
    entry_points={"console_scripts": [f"{n}=tinyalign_ros.nodes.{n}:main" for n in NODES]
                  + ["tinyalign=tinyalign_ros.cli:main"]},
)
