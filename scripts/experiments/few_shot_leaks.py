"""How often does the cascade answer with its prompt's own examples? (a broken transcript made
the LLM reply with a few-shot turn: scripts/experiments/cascade_losses.py)

For every bench user's test utterances (Whisper's beam-5 transcripts, as the bench's cascade):
the cascade's reply, and whether it shares a run of 4+ words with a few-shot example that the
true text does not have. Prints per user: utterances, leaks, the WER with and without them.

    PYTHONPATH=. python scripts/experiments/few_shot_leaks.py
"""
import torch


def ngrams(text, n=4):
    from tinyalign_ros.core.metrics import normalize

    w = normalize(text).split()
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def main():
    from tinyalign_ros.bench import BenchConfig, speakers
    from tinyalign_ros.bench.quality import Systems
    from tinyalign_ros.core.assistant.llm import FrozenLLM
    from tinyalign_ros.core.assistant.prompt import REPEAT_SHOTS
    from tinyalign_ros.core.metrics import wer
    from tinyalign_ros.core.speech.asr import AsrFrontEnd

    torch.set_num_threads(2)
    c = BenchConfig()
    asr = AsrFrontEnd(cpu_threads=2)
    systems = Systems.on(FrozenLLM(threads=2), c.max_new_tokens)
    shots = set().union(*(ngrams(a) for _, a in REPEAT_SHOTS))
    users = [speakers.real_speaker(asr, 0, c.real_test)]
    users += [speakers.synthetic_speaker(n, asr, c.synthetic_pool, c.synthetic_test)
              for n in c.synthetic_users]
    users += [speakers.heldout_voice_family(asr, c.synthetic_pool, c.synthetic_test),
              speakers.heldout_base_voices(asr, c.heldout_test)]
    for user in users:
        refs = [it.text for it in user.test]
        replies = [systems.plain.respond_text(it.transcript).text for it in user.test]
        leaks = [i for i, (ref, r) in enumerate(zip(refs, replies))
                 if (ngrams(r) & shots) - ngrams(ref)]
        keep = [i for i in range(len(refs)) if i not in leaks]
        print(f"{user.name}: {len(refs)} utt., {len(leaks)} replies with a few-shot example's "
              f"words; cascade {wer(refs, replies):.3f}, without those utterances "
              f"{wer([refs[i] for i in keep], [replies[i] for i in keep]):.3f}", flush=True)
        for i in leaks:
            print(f"    REF   {refs[i]}\n    TRANS {user.test[i].transcript}\n"
                  f"    REPLY {replies[i]}", flush=True)


if __name__ == "__main__":
    main()
