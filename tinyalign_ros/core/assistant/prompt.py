"""Instruction injection: the chat-templated text placed around the projected audio tokens.

The prompt is rendered with the LLM's own chat template, with a placeholder where the audio
goes; it is split there into a prefix (identical for every request: its KV cache is computed
once) and a suffix. Presets:
  repeat  nine few-shot turns in which the assistant repeats the user verbatim, no system
          message, then the audio as the last user turn; the answer ends at its first line
          break. With a "repeat word for word" system message and 3 turns SmolLM2-135M
          "repeated" the true text of real prompts at 57.5 % WER; with these settings at 6.5 %
          (and 1.4 % on the benchmark's real-speaker test set).
  reply   a short-answer robot assistant; the audio is the user's turn.
The ASR transcript can be added after the audio as a hint (``transcript_hint``); the few-shot
turns then show the hint too (without that the LLM echoed the hint's wrapper text).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..settings import check_choices, setting

PLACEHOLDER = "<<AUDIO>>"

# Chosen by measurement (the true text of 40 Asterisk prompts / 40 synthetic sentences, WER):
# no system message + these 9 turns 6.5 % / 4.9 %; a "repeat word for word" system message +
# the first 3 turns 57.5 % / 28.4 %; 10 turns 54 % / 31 %. Small LLMs are this sensitive.
REPEAT_SHOTS = (
    ("turn left and stop at the door", "turn left and stop at the door"),
    ("what time is it in London?", "what time is it in London?"),
    ("Please bring me the red cup from the kitchen.", "Please bring me the red cup from the kitchen."),
    ("Please enter your account number followed by the pound key.",
     "Please enter your account number followed by the pound key."),
    ("Thank you for calling, goodbye.", "Thank you for calling, goodbye."),
    ("A journey of a thousand miles begins with a single step.",
     "A journey of a thousand miles begins with a single step."),
    ("Is the door locked?", "Is the door locked?"),
    ("can you find my phone", "can you find my phone"),
    ("It is late so please turn off the lights and lock the door.",
     "It is late so please turn off the lights and lock the door."),
)


@dataclass
class PromptConfig:
    task: str = setting("repeat", "injected instruction: 'repeat' (echo what was said) or "
                                  "'reply' (answer as a robot assistant)",
                        live=True, choices=("repeat", "reply"))
    transcript_hint: bool = setting(True, "aligned mode: also inject the ASR transcript after "
                                          "the audio tokens (measured far better than audio "
                                          "tokens alone: docs/BENCHMARKS.md)", live=True)
    system: str | None = None                # None: the preset's; "" = the template's default
                                             # (repeat: "", measured better than an instruction)
    few_shot: tuple = None                   # ((user, assistant), ...); None: the preset's
    instruction: str = ""                    # text before the audio inside the last user turn
    hint_format: str = "\n(speech recognizer heard: {transcript})"
    single_line: bool | None = None          # answer ends at a line break; None: the preset's

    def __post_init__(self):
        check_choices(self)
        if self.system is None:
            self.system = ("" if self.task == "repeat" else
                           "You are a helpful robot assistant. Answer in one short sentence.")
        if self.single_line is None:
            self.single_line = self.task == "repeat"
        if self.few_shot is None:
            self.few_shot = REPEAT_SHOTS if self.task == "repeat" else ()
        self.few_shot = tuple(tuple(p) for p in self.few_shot)

    def to_dict(self) -> dict:
        return asdict(self)

    # the fields that shape the prompt's text; transcript_hint is a serving switch on top
    TEMPLATE_FIELDS = ("task", "system", "few_shot", "instruction", "hint_format", "single_line")

    def with_recorded(self, recorded: dict, source: str = "projector") -> "PromptConfig":
        """This prompt with the template a checkpoint recorded (its system message, few-shot
        turns, instruction, hint wording): the prompt it was trained with. A projector trained
        for another task is refused (ValueError) rather than served with the wrong prompt;
        transcript_hint stays this config's (it may be switched per deployment)."""
        if not recorded:
            return self
        if recorded.get("task", self.task) != self.task:
            raise ValueError(f"{source} was trained for the {recorded['task']!r} task, this node "
                             f"serves {self.task!r}: set task to {recorded['task']!r} or use a "
                             f"projector trained for {self.task!r}")
        template = {k: recorded[k] for k in self.TEMPLATE_FIELDS if k in recorded}
        return PromptConfig(**{**self.to_dict(), **template})

    def key(self) -> tuple:
        """Hashable identity (prompt caches are kept per distinct prompt)."""
        return tuple(sorted((k, repr(v)) for k, v in self.to_dict().items()))


class PromptBuilder:
    """Token ids of the prompt around the audio, for one tokenizer and one PromptConfig."""

    def __init__(self, tokenizer, config: PromptConfig | None = None):
        self.tokenizer = tokenizer
        self.config = config or PromptConfig()
        messages = []
        if self.config.system:
            messages.append({"role": "system", "content": self.config.system})
        for user, assistant in self.config.few_shot:
            if self.config.transcript_hint:   # show the hint in the examples too, or the LLM
                user += self.config.hint_format.format(transcript=user)   # echoes it verbatim
            messages += [{"role": "user", "content": user},
                         {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": self.config.instruction + PLACEHOLDER})
        rendered = tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True)
        if rendered.count(PLACEHOLDER) != 1:
            raise ValueError("the chat template dropped or repeated the audio placeholder")
        self.prefix_text, self.suffix_text = rendered.split(PLACEHOLDER)
        self.prefix_ids = self._ids(self.prefix_text)
        self._suffix_ids = self._ids(self.suffix_text)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def hinted(self, transcript: str | None) -> bool:
        """Whether the LLM sees this transcript after the audio."""
        return self.config.transcript_hint and transcript is not None

    def suffix_ids(self, transcript: str | None = None) -> list[int]:
        if self.hinted(transcript):
            hint = self.config.hint_format.format(transcript=transcript)
            return self._ids(hint + self.suffix_text)
        return self._suffix_ids
