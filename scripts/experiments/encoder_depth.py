"""Does adapting more of Whisper's encoder help the voices the decoder's LoRA barely moves?
(issue 12; docs/RECOGNIZER.md, "Left to do": croaky went 0.219 -> 0.210 on the wide set)

Every variant trains the decoder's default LoRA (rank 8, alpha 16, lr 5e-4, batch 8; the
node's targets) on a bench user's first 50 pool utterances, for fixed epochs with no gate, and
decodes the bench's test utterances at beam 5 after the epochs listed. ``depth`` adds LoRA
(same rank) on the attention output projection and both FFN linears of the encoder's last
``depth`` layers:
  depth 0  the decoder alone (the node's default targets)
  depth 1  + the last layer, over the frames that hold audio: the shipped ``encoder_top``
  depth 2+ + the layers below. A lower layer changes the audio frames' inputs to the layers
           above, so their attention is recomputed for those frames, over the frames' new keys
           and values and the padding frames' base ones: the padding keeps the base's states
           at every layer, in training and in decoding alike (a checked zero-LoRA run
           reproduces the base encoder)

    PYTHONPATH=. python scripts/experiments/encoder_depth.py croaky,whisper 0,1,2,3 4,8
"""
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

RANK, ALPHA, LR, BATCH = 8, 16.0, 5e-4, 8
K, TEST = 50, None     # a smoke run: K, TEST = 8, 2 (environment ENCODER_DEPTH_SMOKE=1)
if os.environ.get("ENCODER_DEPTH_SMOKE"):
    K, TEST = 8, 2


class Deep:
    """Per-utterance inputs of the encoder's last ``depth`` layers (audio frames only) and the
    base keys/values of the padding frames at the layers above the first adapted one."""

    def __init__(self, enc, dec, mel: np.ndarray, n: int, depth: int):
        self.n = n
        with torch.no_grad():   # not inference_mode: training reads these in autograd
            x = F.gelu(enc.conv1(torch.from_numpy(mel[None].astype(np.float32))))
            x = F.gelu(enc.conv2(x)).transpose(1, 2)
            x = x + enc.positions[:x.shape[1]]
            first = len(enc.layers) - depth
            self.pad_kv = []
            for i, layer in enumerate(enc.layers):
                if i == first:
                    self.x = x[0, :n].clone()
                    self.context = _attend(layer, x)[0, :n].clone()
                elif i > first:
                    _, k, v = _qkv(layer, x)
                    self.pad_kv.append((k[:, :, n:].clone(), v[:, :, n:].clone()))
                x = layer(x)
            self.base = enc.norm(x)[0]          # (1500, dim): the base encoder's states
            # the decoder's cross-attention keys/values of the base states, per layer: a step
            # adds only the audio frames' change (keys/values are linear in the states)
            self.cross = [(k[0].clone(), v[0].clone()) for k, v in dec.cross_kv(self.base[None])]

    def audio_frames(self, enc, lora: dict, depth: int) -> torch.Tensor:
        """(n, dim) final states of the audio frames with the encoder LoRA pairs applied."""
        layers = enc.layers[len(enc.layers) - depth:]
        x, context = self.x[None], self.context[None]
        for j, layer in enumerate(layers):
            if j > 0:   # inputs changed: this layer's attention over new audio, base padding
                q, k, v = _qkv(layer, x)
                pk, pv = self.pad_kv[j - 1]
                a = F.scaled_dot_product_attention(q, torch.cat([k, pk], 2),
                                                   torch.cat([v, pv], 2))
                context = a.transpose(1, 2).reshape(x.shape)
            x = x + _lin(layer.out, context, lora.get(f"e{j}.out"))
            h = F.gelu(_lin(layer.ffn1, layer.ffn_norm(x), lora.get(f"e{j}.ffn1")))
            x = x + _lin(layer.ffn2, h, lora.get(f"e{j}.ffn2"))
        return enc.norm(x)[0]

    def memory(self, enc, lora, depth) -> torch.Tensor:
        if depth == 0:
            return self.base
        m = self.base.clone()
        m[:self.n] = self.audio_frames(enc, lora, depth)
        return m


def _qkv(layer, x):
    B, T, D = x.shape
    return layer.qkv(layer.attn_norm(x)).view(B, T, 3, layer.heads, D // layer.heads) \
        .permute(2, 0, 3, 1, 4)


def _attend(layer, x):
    q, k, v = _qkv(layer, x)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(x.shape)


def _lin(m, x, pair):
    y = m(x)
    return y if pair is None else y + (ALPHA / RANK) * F.linear(F.linear(x, pair[0]), pair[1])


def _pair(lin, gen):
    a = torch.empty(RANK, lin.in_features)
    torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=gen)
    return [a.requires_grad_(True), torch.zeros(lin.out_features, RANK, requires_grad=True)]


def prepare(rec, examples, depth):
    from tinyalign_ros.core.speech.audio import SAMPLE_RATE, load_audio
    out = []
    for e in examples:
        audio = load_audio(e.audio)
        mel, n = rec.windows(audio)[0]
        out.append((Deep(rec.encoder, rec.decoder, mel, n, depth), e.text,
                    audio.size / SAMPLE_RATE))
    return out


def loss_of(rec, batch, dec_ad, lora, depth):
    from tinyalign_ros.core.learning.recognizer_adapt import _batch_tokens
    dec = rec.decoder
    inp, tgt = _batch_tokens(rec, [text for _, text, _ in batch])
    cross = [(torch.stack([d.cross[i][0] for d, _, _ in batch]),
              torch.stack([d.cross[i][1] for d, _, _ in batch])) for i in range(len(dec.layers))]
    if depth:
        n = max(d.n for d, _, _ in batch)
        delta = torch.zeros(len(batch), n, dec.dim)
        for j, (d, _, _) in enumerate(batch):
            delta[j, :d.n] = d.audio_frames(rec.encoder, lora, depth) - d.base[:d.n]
        for i, layer in enumerate(dec.layers):
            dk, dv = F.linear(delta, layer.cross_kv.weight).chunk(2, -1)
            dk, dv = (z.view(len(batch), n, layer.heads, -1).transpose(1, 2) for z in (dk, dv))
            k, v = cross[i]
            cross[i] = (torch.cat([k[:, :, :n] + dk, k[:, :, n:]], 2),
                        torch.cat([v[:, :, :n] + dv, v[:, :, n:]], 2))
    h, _ = dec.hidden(inp, cross, ad=dec_ad)
    keep = tgt >= 0
    return F.cross_entropy(dec.logits(h[keep], dec_ad), tgt[keep])


def test_wer(rec, test, dec_ad, lora, depth):
    from tinyalign_ros.core.metrics import wer
    from tinyalign_ros.core.speech.whisper_decoder import DecodeOptions
    hyps = []
    with torch.inference_mode():
        for d, _, dur in test:
            o = DecodeOptions(beam_size=5, max_new_tokens=int(min(dur, 30) * 8) + 16)
            hyps.append(rec.decode(d.memory(rec.encoder, lora, depth)[None], o, dec_ad)
                        .text.strip())
    return wer([text for _, text, _ in test], hyps)


def run(rec, name, depth, eval_epochs):
    from tinyalign_ros.bench import speakers
    from tinyalign_ros.core.learning.recognizer_adapt import DEFAULT_TARGETS
    from tinyalign_ros.core.speech.whisper_decoder import DecoderAdapter
    from tinyalign_ros.bench import BenchConfig

    c = BenchConfig()
    pool_ex, test_ex = speakers.examples(name, c.synthetic_pool, c.synthetic_test)
    t0 = time.perf_counter()
    pool, test = prepare(rec, pool_ex[:K], depth), prepare(rec, test_ex[:TEST], depth)
    prep_s = time.perf_counter() - t0
    if depth:   # zero LoRA B: the recomputed audio frames must be the base encoder's
        d = pool[0][0]
        diff = float((d.audio_frames(rec.encoder, {}, depth) - d.base[:d.n]).abs().max())
        assert diff < 1e-3, f"deep recompute differs from the base encoder by {diff}"
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    dec_pairs = {lin.key: _pair(lin, gen) for layer in rec.decoder.layers
                 for t in DEFAULT_TARGETS for lin in [getattr(layer, t)]}
    enc_layers = rec.encoder.layers[len(rec.encoder.layers) - depth:]
    lora = {f"e{j}.{m}": _pair(getattr(layer, m), gen)
            for j, layer in enumerate(enc_layers) for m in ("out", "ffn1", "ffn2")}
    dec_ad = DecoderAdapter(lora={k: tuple(v) for k, v in dec_pairs.items()}, scale=ALPHA / RANK,
                            overrides={})
    enc_lora = {k: tuple(v) for k, v in lora.items()}
    params = [p for v in (*dec_pairs.values(), *lora.values()) for p in v]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    rng = np.random.default_rng(0)
    row = {"user": name, "depth": depth, "prep_s": round(prep_s, 1)}
    if depth == 0:   # the same for every depth
        row["unadapted"] = round(test_wer(rec, test, None, {}, 0), 4)
    train_s = 0.0
    for epoch in range(1, max(eval_epochs) + 1):
        t1 = time.perf_counter()
        order = rng.permutation(len(pool))
        for s in range(0, len(order), BATCH):
            loss = loss_of(rec, [pool[i] for i in order[s:s + BATCH]], dec_ad, enc_lora, depth)
            opt.zero_grad()
            loss.backward()
            opt.step()
        train_s += time.perf_counter() - t1
        if epoch in eval_epochs:
            row[f"epoch {epoch}"] = round(test_wer(rec, test, dec_ad, enc_lora, depth), 4)
            row[f"train_s {epoch}"] = round(train_s, 1)
            print(row, flush=True)
    return row


def main():
    from tinyalign_ros.core.speech.whisper_decoder import WhisperRecognizer
    users = sys.argv[1].split(",")
    depths = [int(d) for d in (sys.argv[2] if len(sys.argv) > 2 else "0,1,2").split(",")]
    eval_epochs = [int(e) for e in (sys.argv[3] if len(sys.argv) > 3 else "4,8").split(",")]
    torch.set_num_threads(2)
    rec = WhisperRecognizer()
    for name in users:
        for depth in depths:
            print("FINAL", run(rec, name, depth, eval_epochs), flush=True)


if __name__ == "__main__":
    main()
