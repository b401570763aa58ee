"""Where does the LLM lose words that the recogniser got right? (issue 12: the whisper voice's
adapted recogniser is at 27.9 % and its adapted cascade at 32.8 % in the same bench run)

For a bench user: the node's recogniser recipe on pool[:50] (cached items of
recognizer_recipe.py), the test utterances decoded at beam 5, then the bench's cascade (the
serving prompt, the bench's reply length) on each transcript; prints both WERs and every
utterance whose reply has more errors than its transcript.

    PYTHONPATH=.:scripts/experiments python scripts/experiments/cascade_losses.py whisper
"""
import sys

import torch

from recognizer_recipe import items_of


def main():
    from tinyalign_ros.bench import BenchConfig
    from tinyalign_ros.bench.quality import Systems
    from tinyalign_ros.core.assistant.llm import FrozenLLM
    from tinyalign_ros.core.learning.adapt import AdaptConfig, adapt_recognizer_items
    from tinyalign_ros.core.learning.recognizer_adapt import evaluate
    from tinyalign_ros.core.metrics import wer
    from tinyalign_ros.core.speech.whisper_decoder import WhisperRecognizer

    torch.set_num_threads(2)
    user = sys.argv[1]
    rec = WhisperRecognizer()
    data = items_of(rec, user)
    result = adapt_recognizer_items(rec, data["pool"][:50], None, AdaptConfig(),
                                    user_id=f"losses-{user}")
    hyps = evaluate(rec, data["test"], result.adapter, beam_size=5)["hypotheses"]
    systems = Systems.on(FrozenLLM(threads=2), BenchConfig().max_new_tokens)
    replies = [systems.plain.respond_text(h).text for h in hyps]
    refs = [it.text for it in data["test"]]
    print(f"{user}: published {result.published}, transcript {wer(refs, hyps):.3f}, "
          f"cascade reply {wer(refs, replies):.3f}")
    for ref, h, r in zip(refs, hyps, replies):
        eh, er = (wer([ref], [x]) * len(ref.split()) for x in (h, r))
        if er > eh:
            print(f"  +{er - eh:.0f}  REF   {ref}\n       TRANS {h}\n       REPLY {r}")


if __name__ == "__main__":
    main()
