"""One source of truth: node parameters, config/tinyalign.yaml and CLI flags all derive from the
core config dataclasses; these tests fail when any of them disagree in name, type or value, and
show that `ros2 param set` either takes effect or is refused with a reason."""
import pytest
import yaml

from conftest import ROOT, call_service
from tinyalign_ros import graph
from tinyalign_ros.core.settings import settings_of

CONFIG = ROOT / "config" / graph.CONFIG_FILE


def test_the_yaml_file_is_rendered_from_the_dataclasses():
    assert CONFIG.read_text() == graph.render_config(), (
        "config/tinyalign.yaml differs from the settings dataclasses: run "
        "`python -m tinyalign_ros.graph > config/tinyalign.yaml`")


def test_yaml_entries_have_the_dataclass_name_type_and_default():
    config = yaml.safe_load(CONFIG.read_text())
    assert set(config) == {n.name for n in graph.NODES}
    for spec in graph.NODES:
        params = {p.name: p for p in graph.node_parameters(spec.name)}
        entries = config[spec.name]["ros__parameters"]
        assert list(entries) == list(params), spec.name
        for name, value in entries.items():
            default = params[name].default
            # same type as the declared default, or ROS refuses the file
            assert type(value) is type(default) and value == default, (spec.name, name, value)


def test_every_setting_has_help_and_a_valid_default():
    for groups in graph.node_settings().values():
        for group in groups:
            instance = group.config()            # defaults pass the class's own checks
            for f in settings_of(group.config):
                assert f.metadata["help"].strip(), f"{group.config.__name__}.{f.name}"
                choices = f.metadata["choices"]
                assert not choices or getattr(instance, f.name) in choices


def test_launch_argument_defaults_are_the_settings_defaults():
    """A launch argument overrides the parameter file, so its default must be the setting's."""
    for arg in graph.LAUNCH_ARGUMENTS:
        for node_name, param in arg.sets.items():
            default = {p.name: p.default for p in graph.node_parameters(node_name)}[param]
            assert yaml.safe_load(arg.default or '""') == default, (arg.name, node_name, param)


def test_cli_flags_default_to_the_dataclasses():
    from tinyalign_ros.cli import PROMPT_FLAGS, TRAIN_FLAGS, build_parser
    from tinyalign_ros.core.assistant.pipeline import GenerationConfig
    from tinyalign_ros.core.assistant.projector import ProjectorConfig
    from tinyalign_ros.core.assistant.prompt import PromptConfig
    from tinyalign_ros.core.learning.train import TrainConfig
    from tinyalign_ros.core.settings import from_flags

    parser = build_parser()
    args = parser.parse_args(["train", "--data", "d.jsonl", "--out", "p.safetensors"])
    assert from_flags(args, TrainConfig, TRAIN_FLAGS) == TrainConfig()
    assert from_flags(args, ProjectorConfig) == ProjectorConfig()
    assert from_flags(args, PromptConfig, PROMPT_FLAGS) == PromptConfig()
    assert args.max_new_tokens == GenerationConfig().max_new_tokens
    # every TrainConfig setting but threads (the shared --threads flag) is a flag
    assert set(TRAIN_FLAGS) == {f.name for f in settings_of(TrainConfig)} - {"threads"}
    args = parser.parse_args(["respond", "x.wav", "--no-transcript-hint", "--task", "reply",
                              "--max-new-tokens", "7"])
    assert from_flags(args, PromptConfig, PROMPT_FLAGS) == PromptConfig(task="reply",
                                                                        transcript_hint=False)
    assert args.max_new_tokens == 7
    with pytest.raises(SystemExit):
        parser.parse_args(["respond", "x.wav", "--task", "sing"])


def test_one_adaptation_recipe_everywhere():
    """The drift that made the nodes pair the hint with EmbedLink adaptation cannot come back:
    the node's defaults are AdaptConfig's, which trains on the prompt it serves (hint on)."""
    from tinyalign_ros.core.assistant.prompt import PromptConfig
    from tinyalign_ros.core.learning.adapt import AdaptConfig

    params = {p.name: p.default for p in graph.node_parameters("adaptation")}
    assert {f.name: getattr(AdaptConfig(), f.name) for f in settings_of(AdaptConfig)} == \
        {n: params[n] for n in (f.name for f in settings_of(AdaptConfig))}
    assert params["transcript_hint"] == PromptConfig().transcript_hint is True
    assert AdaptConfig().objective == "ce"
    response = {p.name: p.default for p in graph.node_parameters("response")}
    assert response["transcript_hint"] == params["transcript_hint"]
    assert response["max_new_tokens"] == params["max_new_tokens"]


# ---- running nodes: declared parameters and `ros2 param set`
def _call(node, srv_type, name, request, procs, timeout=30):
    # parameter services only: idempotent, so a lost request is sent again
    return call_service(node, node.create_client(srv_type, name), request, procs, timeout,
                        resend_after=5)


def _set(node, fqn, procs, **values):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter as RclpyParameter

    request = SetParameters.Request(parameters=[
        RclpyParameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    return _call(node, SetParameters, f"{fqn}/set_parameters", request, procs).results


@pytest.mark.ros
def test_running_nodes_declare_the_settings_and_refuse_what_cannot_change_live(
        ros_node, start_node, tmp_path):
    from rcl_interfaces.srv import DescribeParameters, GetParameters
    from rclpy.parameter import parameter_value_to_python

    procs = [start_node("capture_node", source="microphone", retry_period_s=5.0),
             start_node("asr_node", autostart=False),
             start_node("response_node", autostart=False),
             start_node("adaptation_node", autostart=False, store_dir=str(tmp_path / "store"),
                        nice=0)]
    for spec in graph.NODES:
        fqn = f"/{spec.name}"
        params = graph.node_parameters(spec.name)
        names = [p.name for p in params]
        described = _call(ros_node, DescribeParameters, f"{fqn}/describe_parameters",
                          DescribeParameters.Request(names=names), procs).descriptors
        got = _call(ros_node, GetParameters, f"{fqn}/get_parameters",
                    GetParameters.Request(names=names), procs).values
        for p, d, v in zip(params, described, got):
            assert d.name == p.name and d.description.startswith(p.description), p.name
            value = parameter_value_to_python(v)
            if (spec.name, p.name) not in {("adaptation", "store_dir"), ("adaptation", "nice"),
                                           ("capture", "retry_period_s"),
                                           ("asr", "autostart"), ("response", "autostart"),
                                           ("adaptation", "autostart")}:
                assert type(value) is type(p.default) and value == p.default, (fqn, p.name)

    # live: takes effect (the node reads it back); not live: refused with the reason
    asr, response, adaptation = "/asr", "/response", "/adaptation"
    ok = _set(ros_node, asr, procs, user_id="bob")[0]
    assert ok.successful
    bad = _set(ros_node, asr, procs, user_id="../etc")[0]
    assert not bad.successful and "user id" in bad.reason.lower()
    fixed = _set(ros_node, asr, procs, whisper_model="/models/other")[0]
    assert not fixed.successful and "read when the node starts" in fixed.reason
    assert not _set(ros_node, response, procs, mode="loud")[0].successful
    assert _set(ros_node, response, procs, mode="cascade", max_new_tokens=5,
                transcript_hint=False)[0].successful
    refused = _set(ros_node, response, procs, llm_model="/models/x")[0]
    assert not refused.successful and "llm_model" in refused.reason
    assert _set(ros_node, adaptation, procs, objective="embedlink", epochs=3)[0].successful
    assert not _set(ros_node, adaptation, procs, objective="magic")[0].successful
    values = _call(ros_node, GetParameters, f"{response}/get_parameters",
                   GetParameters.Request(names=["mode", "max_new_tokens", "llm_model"]),
                   procs).values
    assert [parameter_value_to_python(v) for v in values] == ["cascade", 5, ""]
    for p in procs:
        assert p.poll() is None, p.output()


def test_the_shipped_base_records_the_prompt_it_is_served_and_measured_with():
    from tinyalign_ros.core.assistant.checkpoint import load_checkpoint
    from tinyalign_ros.core.assistant.prompt import PromptConfig
    from tinyalign_ros.core.models import default_projector

    recorded = load_checkpoint(default_projector()).meta.prompt
    assert PromptConfig().with_recorded(recorded) == PromptConfig()
