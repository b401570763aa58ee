"""One source of truth for every setting.

A setting is a field of a config dataclass that lives next to its concept (``PromptConfig`` in
assistant/prompt.py, ``AsrConfig`` in speech/asr.py, ``AdaptConfig`` in learning/adapt.py, ...),
declared with :func:`setting`: its default, its help text, its choices, and whether a running
node may change it (``live``). Everything else derives from those fields:

  node parameters   name, type, default and description (nodes/common.py declares them)
  the YAML file     config/tinyalign.yaml is :func:`render_yaml` of the node groups (a test
                    fails when the file and the dataclasses disagree)
  CLI flags         :func:`add_flags` / :func:`from_flags` (``--name-with-dashes``)

A node's parameters are one or more :class:`Group`\\ s: a config class, optionally a subset of its
settings and a name prefix (the ASR node's ``vad_threshold`` is ``VadConfig.threshold``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from typing import Any


def setting(default: Any, help: str, *, live: bool = False, choices: tuple = ()) -> Any:
    """A dataclass field that is also a user-facing setting."""
    return dataclasses.field(default=default,
                             metadata={"help": help, "live": live, "choices": tuple(choices)})


def settings_of(config_cls) -> list[dataclasses.Field]:
    """The fields of a config class declared with :func:`setting`, in declaration order."""
    return [f for f in dataclasses.fields(config_cls) if "help" in f.metadata]


def check_choices(config) -> None:
    """ValueError when a setting holds a value outside its choices (called by __post_init__)."""
    for f in settings_of(type(config)):
        choices = f.metadata["choices"]
        value = getattr(config, f.name)
        if choices and value not in choices:
            raise ValueError(f"{f.name} must be one of {', '.join(map(str, choices))}; "
                             f"got {value!r}")


@dataclass(frozen=True)
class Group:
    """A config class's settings as parameters of one node."""
    config: type
    names: tuple = ()      # () = every setting of the class
    prefix: str = ""

    def fields(self) -> list[dataclasses.Field]:
        all_fields = settings_of(self.config)
        if not self.names:
            return all_fields
        by_name = {f.name: f for f in all_fields}
        missing = [n for n in self.names if n not in by_name]
        if missing:
            raise KeyError(f"{self.config.__name__} has no settings {missing}")
        return [by_name[n] for n in self.names]

    def parameters(self) -> list["Parameter"]:
        return [Parameter(self.prefix + f.name, f.default, describe(f), f.metadata["live"])
                for f in self.fields()]

    def build(self, values: dict, **overrides):
        """An instance of the config class from parameter values (by parameter name)."""
        kwargs = {f.name: values[self.prefix + f.name] for f in self.fields()
                  if self.prefix + f.name in values}
        kwargs.update(overrides)
        return self.config(**kwargs)


@dataclass(frozen=True)
class Parameter:
    name: str
    default: Any
    description: str
    live: bool


def describe(f: dataclasses.Field) -> str:
    text = f.metadata["help"]
    if f.metadata["choices"]:
        text += f" (one of: {', '.join(map(str, f.metadata['choices']))})"
    return text


def parameters(groups) -> list[Parameter]:
    """Every parameter of a node; a name used twice is a programming error."""
    out, seen = [], set()
    for group in groups:
        for p in group.parameters():
            if p.name in seen:
                raise ValueError(f"parameter {p.name!r} is declared by two groups")
            seen.add(p.name)
            out.append(p)
    return out


# ---- the YAML parameter file
def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):   # JSON strings are YAML strings; plain words stay plain
        plain = value and all(c.isalnum() or c in "_.-/" for c in value)
        return value if plain else json.dumps(value)
    return repr(value)


def render_yaml(node_groups: dict, header: str = "") -> str:
    """The parameter file of every node: ``{node name: groups}`` -> YAML text with each
    parameter's description as a comment, grouped by config class."""
    lines = [header.rstrip(), ""] if header else []
    for node, groups in node_groups.items():
        lines += [f"{node}:", "  ros__parameters:"]
        for group in groups:
            prefix = f" ({group.prefix}*)" if group.prefix else ""
            lines.append(f"    # {group.config.__name__}{prefix}")
            for p in group.parameters():
                live = " [live]" if p.live else ""
                lines.append(f"    {p.name}: {_yaml_value(p.default)}  # {p.description}{live}")
        lines.append("")
    return "\n".join(lines)


# ---- CLI flags
def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, config_cls, names: tuple = (), prefix: str = "",
              **defaults) -> None:
    """One flag per setting; ``defaults`` override a default for this command only (said so
    in --help)."""
    for f in Group(config_cls, names, prefix).fields():
        default = defaults.get(f.name, f.default)
        text = f.metadata["help"] if f.metadata["choices"] else describe(f)  # argparse lists them
        # argparse %-formats help text: a literal "%" (e.g. "30 % of it") must be doubled
        kw: dict = {"default": default, "dest": prefix + f.name,
                    "help": f"{text} (default: {default})".replace("%", "%%")}
        if isinstance(f.default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = type(f.default)
            if f.metadata["choices"]:
                kw["choices"] = f.metadata["choices"]
        parser.add_argument(flag(prefix + f.name), **kw)


def from_flags(args: argparse.Namespace, config_cls, names: tuple = (), prefix: str = "",
               **overrides):
    return Group(config_cls, names, prefix).build(vars(args), **overrides)
