"""Optional LoRA on the frozen LLM (peft), trained with cross-entropy beside the projector and
stored in the same checkpoint, so each user's projector can carry its own small LLM adapter.

The LLM is wrapped once with peft; each checkpoint's adapter is loaded under its version name
and activated only for the requests that use that projector (adapters off otherwise).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

PREFIX = "lora::"


@dataclass
class LoraSettings:
    rank: int = 8
    alpha: int = 16
    targets: list = field(default_factory=lambda: ["q_proj", "v_proj"])

    def to_dict(self) -> dict:
        return asdict(self)


def _peft_config(s: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(r=s.rank, lora_alpha=s.alpha, target_modules=list(s.targets),
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")


def add_adapter(llm, name: str, settings: LoraSettings) -> None:
    """Add (and activate) an adapter named ``name``; wraps the LLM with peft the first time."""
    from peft import PeftModel, get_peft_model

    if isinstance(llm.model, PeftModel):
        if name not in llm.model.peft_config:
            llm.model.add_adapter(name, _peft_config(settings))
    else:
        llm.model = get_peft_model(llm.model, _peft_config(settings), adapter_name=name)
    llm.model.set_adapter(name)
    llm.model.eval()


def adapter_parameters(llm, name: str) -> list[torch.nn.Parameter]:
    params = [p for n, p in llm.model.named_parameters() if "lora_" in n and f".{name}." in n]
    for p in params:
        p.requires_grad_(True)
    return params


def adapter_state(llm, name: str) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(llm.model, adapter_name=name)
    return {PREFIX + k: v.detach().float().contiguous() for k, v in state.items()}


def load_adapter(llm, name: str, settings: LoraSettings, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    add_adapter(llm, name, settings)
    weights = {k[len(PREFIX):]: v.to(llm.device, llm.dtype) for k, v in state.items()}
    set_peft_model_state_dict(llm.model, weights, adapter_name=name)
    for n, p in llm.model.named_parameters():
        p.requires_grad_(False)


def has_adapters(llm) -> bool:
    from peft import PeftModel

    return isinstance(llm.model, PeftModel)


def no_adapter(llm):
    """A context in which the LLM runs as the base model, whatever adapters it holds."""
    from contextlib import nullcontext

    return llm.model.disable_adapter() if has_adapters(llm) else nullcontext()


def remove_adapter(llm, name: str) -> None:
    """Drop an adapter; the last one unwraps the LLM back to the plain model."""
    names = list(llm.model.peft_config)
    if names == [name]:
        llm.model = llm.model.unload()
        return
    llm.model.delete_adapter(name)
    llm.model.set_adapter([n for n in llm.model.peft_config][0])  # callers pick per request
