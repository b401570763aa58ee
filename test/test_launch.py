"""The launch file, checked against what the build installs (launch_ros is not on PyPI, so the
launch file is run against small stand-ins for launch/launch_ros that record what it asks for)."""
import ast
import importlib
import runpy
import sys
import types
from pathlib import Path

import pytest
import yaml

from conftest import LIB_DIR, ROOT, SHARE_DIR
from tinyalign_ros import graph

LAUNCH_FILE = ROOT / "launch" / "tinyalign.launch.py"


class Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorder):
    @property
    def name(self):
        return self.args[0]

    def perform(self, context):
        return context[self.name]


def run_launch(monkeypatch, installed, **arguments):
    """The launch file's entities, its node actions expanded for these launch arguments."""
    fakes = {
        "launch": types.SimpleNamespace(LaunchDescription=Recorder),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=Recorder,
                                                OpaqueFunction=Recorder),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=LaunchConfiguration),
        "launch_ros": types.SimpleNamespace(),
        "launch_ros.actions": types.SimpleNamespace(Node=Recorder),
    }
    for name, mod in fakes.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(installed))
    ld = runpy.run_path(str(LAUNCH_FILE))["generate_launch_description"]()
    entities = ld.args[0]
    declared = {e.args[0]: e.kwargs for e in entities if "default_value" in e.kwargs}
    unknown = set(arguments) - set(declared)
    assert not unknown, f"not launch arguments: {unknown}"
    context = {name: kw["default_value"] for name, kw in declared.items()} | arguments
    nodes = [n.kwargs for e in entities if "function" in e.kwargs
             for n in e.kwargs["function"](context)]
    return declared, nodes


@pytest.fixture
def launch_description(monkeypatch, installed):
    return run_launch(monkeypatch, installed)


def test_launch_starts_every_node_of_the_graph(launch_description):
    _, nodes = launch_description
    assert [(n["name"], n["executable"]) for n in nodes] == \
        [(s.name, s.executable) for s in graph.NODES]


def test_every_launched_executable_is_installed(launch_description):
    _, nodes = launch_description
    for n in nodes:
        assert n["package"] == "tinyalign_ros"
        exe = LIB_DIR / n["executable"]
        assert exe.is_file() and exe.stat().st_mode & 0o111, f"{exe} not installed/executable"


def test_every_parameter_set_is_declared(launch_description):
    declared_args, nodes = launch_description
    for n in nodes:
        params = {p.name for p in graph.node_parameters(n["name"])}
        params_file, overrides = n["parameters"]
        assert params_file == declared_args["params_file"]["default_value"]
        for param, value in overrides.items():
            assert param in params, f"launch sets {n['name']}.{param}, which is not declared"
            assert value.name in declared_args, f"{value.name} is not a declared launch argument"
        config = yaml.safe_load(Path(declared_args["params_file"]["default_value"]).read_text())
        assert set(config[n["name"]]["ros__parameters"]) <= params


def test_config_file_named_by_launch_exists_installed(launch_description):
    declared_args, _ = launch_description
    path = Path(declared_args["params_file"]["default_value"])
    assert path == SHARE_DIR / "config" / graph.CONFIG_FILE and path.is_file()
    assert (SHARE_DIR / "launch" / LAUNCH_FILE.name).is_file()
    assert path.read_text() == (ROOT / "config" / graph.CONFIG_FILE).read_text()


def test_launch_argument_defaults_match_config(launch_description):
    """A plain launch must behave like the parameter file says."""
    config = yaml.safe_load((ROOT / "config" / graph.CONFIG_FILE).read_text())
    for arg in graph.LAUNCH_ARGUMENTS:
        for node_name, param in arg.sets.items():
            assert config[node_name]["ros__parameters"][param] == \
                yaml.safe_load(arg.default or '""'), arg.name


def test_setup_py_entry_points_match_installed_executables(installed):
    tree = ast.parse((ROOT / "setup.py").read_text())
    assert "console_scripts" in ast.unparse(tree)
    nodes = sorted(p.stem for p in (ROOT / "tinyalign_ros" / "nodes").glob("*_node.py"))
    installed_exes = sorted(p.name for p in LIB_DIR.iterdir() if p.name.endswith("_node"))
    assert installed_exes == nodes
    assert {s.executable for s in graph.NODES} <= set(nodes)
    assert (LIB_DIR / "tinyalign").is_file()
    for exe in nodes:
        assert callable(importlib.import_module(f"tinyalign_ros.nodes.{exe}").main)


def test_single_process_launch_runs_one_graph_node_with_each_nodes_settings(monkeypatch,
                                                                             installed):
    declared, nodes = run_launch(monkeypatch, installed, single_process="true",
                                 audio_source="file", audio_file="/data/speech/*.wav",
                                 user_id="alice", device="cpu")
    assert len(nodes) == 1
    node = nodes[0]
    assert node["executable"] == graph.SINGLE_PROCESS_EXECUTABLE and "name" not in node
    assert (LIB_DIR / node["executable"]).is_file()
    merged_path = Path(node["parameters"][0])
    merged = yaml.safe_load(merged_path.read_text())
    merged_path.unlink()
    config = yaml.safe_load(Path(declared["params_file"]["default_value"]).read_text())
    set_here = {("capture", "source"): "file", ("capture", "file_path"): "/data/speech/*.wav",
                ("asr", "user_id"): "alice", ("asr", "device"): "cpu",
                ("response", "device"): "cpu", ("adaptation", "device"): "cpu"}
    for spec in graph.NODES:
        got = merged[spec.name]["ros__parameters"]
        for param, value in config[spec.name]["ros__parameters"].items():
            assert got[param] == set_here.get((spec.name, param), value), (spec.name, param)
    # 'device' is the microphone on capture and the model device elsewhere: kept apart
    assert merged["capture"]["ros__parameters"]["device"] == ""

