"""Text sampled from a small trained transformer (the paper's TnL, n = 1, 2, 4 layers): between bigrams and text.

A generator GPT (`layers`, `width`, SP) is trained on the text family's windows of the corpus (same corpus,
tokenizer and held-out split) for `generator_tokens` tokens, with AdamW and the engine's schedule (warm-up, cosine).
It then writes independent sequences of context + 1 tokens at temperature 1, as the windows it was trained on
look: x_0 from the corpus's unigram law (a window's first token, which the generator never predicts), then each
next token from the generator given the prefix. Batches of ROWS sequences advance together, one position per step
through a key/value cache (exactly the model's logits, no Python loop per sequence). `pool_tokens` tokens are
written for training runs, and `eval_sequences` more, from a separate random stream, for evaluation.

Generator (model.pt) and pools are cached under <cache>/generators/<key>, key = every setting above plus the
corpus, tokenizer, torch version and device type: sweeps naming the same generator reuse it, and sampling is
deterministic for a seed (one torch generator drives every draw; one torch thread on the CPU). Training and
sampling use CUDA when there is one. Runs read the pool as the text family reads a corpus: once, in an
order fixed by their seed (`repeats` allows more passes). spec() records the generator's losses and
`loss_floor_estimate`: the mean entropy of the next-token laws the pool was drawn from, i.e. the expected loss of
the ideal predictor (the generator itself) over positions 0..context-1, a Monte Carlo estimate.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
from filelock import FileLock

from scalingkit.errors import UserError
from scalingkit.families.cache import cache_root
from scalingkit.families.language_spec import check_derived, check_spec
from scalingkit.families.text import TextFamily
from scalingkit.families.token_cache import cached, from_settings, token_dtype
from scalingkit.model.counts import check_shape
from scalingkit.train.law import TableLaw

FORMAT = 1
ROWS = 128  # sequences sampled side by side on the CPU (part of the key: it orders the random draws)
GPU_ROWS = 2048  # on a GPU: a 4096-wide generator needs big batches to be fast (its key/value cache: ~7 GB)


def build_generated(name: str, spec: dict) -> "GeneratedFamily":
    settings, derived = check_spec(name, spec)
    _check_size(name, settings)  # before the tokenizer is trained or the corpus read
    tokenizer, corpus_arrays = from_settings(settings, settings["held_out"])
    key = _key(settings, corpus_arrays.meta, tokenizer.fingerprint)
    folder = cache_root() / "generators" / key
    try:
        check_shape(settings["layers"], settings["width"])
    except UserError as exc:
        raise UserError(f"family {name!r}: keys 'layers' and 'width': {exc}") from None
    arrays = cached(folder, lambda tmp: _train_and_sample(tmp, key, name, settings, tokenizer, corpus_arrays))
    family = GeneratedFamily(name, settings, tokenizer, arrays)
    check_derived(name, derived, family.spec() if derived else {})
    return family


def _check_size(name: str, settings: dict) -> None:
    """Refuse, before training anything, a generator or pools that cannot fit in this machine's memory: the
    generator's training (model/counts.training_bytes), its sampled pools (int64, copied once to the cache's dtype)
    and the held-out sequences' next-token table (float32 per position and token)."""
    from scalingkit.config import check_memory
    from scalingkit.families.tokenizers import GPT2_VOCAB
    from scalingkit.model.counts import training_bytes

    tokenizer = settings["tokenizer"]
    vocab = GPT2_VOCAB if tokenizer == "gpt2" else int(tokenizer["bpe"])

    length = settings["context"] + 1
    parts = {"keys 'layers' and 'width' (the generator's training)":
                 training_bytes(settings["layers"], settings["width"], vocab, settings["batch"] * settings["context"]),
             "key 'pool_tokens' (the sampled pool)": 16 * (settings["pool_tokens"] + length),
             "key 'eval_sequences' (held-out sequences and their next-token table)":
                 settings["eval_sequences"] * (16 * length + 4 * settings["context"] * vocab)}
    biggest = max(parts, key=parts.get)
    check_memory(sum(parts.values()), f"family {name!r}", "auto", why=f", most of it for {biggest}")


class GeneratedFamily(TextFamily):
    """Sequences of a trained generator: a pool read like a corpus, one window = one generated sequence."""

    eval_key = "eval_sequences"

    def sample(self, n_seq, length, rng):
        self._check_length(length)
        return super().sample(n_seq, length, rng)

    def eval_sample(self, n_seq, length, rng):
        self._check_length(length)
        return super().eval_sample(n_seq, length, rng)

    def _check_length(self, length):
        if length != self.settings["context"] + 1:
            raise UserError(f"family {self.name!r}: its sequences are {self.settings['context'] + 1} tokens long "
                            f"(key 'context' = {self.settings['context']}), the run asks for {length}: set the "
                            f"family's context to the sweep's")

    def next_token_law(self, held_out: np.ndarray, context: int) -> TableLaw:
        """The generator's own next-token law at temperature 1, at every position of `held_out` (its sequences were
        drawn from it): log-probabilities computed once per held-out set and cached beside the generator."""
        self._check_length(held_out.shape[1])
        folder = cache_root() / "generators" / self.meta["key"]
        digest = hashlib.sha256(np.ascontiguousarray(held_out, dtype=np.int64).tobytes()).hexdigest()[:24]
        path = folder / f"law-{digest}.npy"
        with FileLock(str(path) + ".lock"):
            logp = _load_law(path, held_out.shape)
            if logp is None:
                tmp = path.with_name(path.name + ".tmp.npy")
                np.save(tmp, generator_log_probs(folder / "model.pt", held_out))
                os.replace(tmp, path)  # a reader sees the whole table or none
                logp = _load_law(path, held_out.shape)
        return TableLaw(logp, floor=float(self.meta["generator"]["entropy"]), floor_kind="estimate")

    def spec(self) -> dict:
        base = {k: v for k, v in super().spec().items() if k not in ("train_documents", "held_out_documents")}
        g = self.meta["generator"]
        return {**base, "generator_key": self.meta["key"], "generator_params": g["params"],
                "generator_train_loss": g["train_loss"], "generator_eval_loss": g["eval_loss"],
                "loss_floor_estimate": g["entropy"]}


def _load_law(path: Path, shape: tuple):
    """The cached table memory-mapped, or None when it is missing or not the table for `shape` (rebuilt then)."""
    try:
        logp = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return logp if logp.shape[:2] == (shape[0], shape[1] - 1) and logp.dtype == np.float32 else None


def generator_log_probs(model_file: Path, seqs: np.ndarray, rows: int = 64) -> np.ndarray:
    """log P_generator(x_{t+1} | x_0..x_t) for every sequence and position t < context: float32 (n, context, V),
    computed as the generator sampled (the same device and autocast)."""
    import torch

    from scalingkit.model.gpt import GPTConfig, build_model

    saved = torch.load(model_file, map_location="cpu", weights_only=True)
    cfg = GPTConfig(**saved["config"])
    model, _ = build_model(cfg, "sp", 0)
    model.load_state_dict(saved["state_dict"])
    device = _device()
    model.to(device).eval()
    out = np.empty((len(seqs), seqs.shape[1] - 1, cfg.vocab_size), dtype=np.float32)
    with torch.no_grad(), _autocast(device):
        for start in range(0, len(seqs), rows):
            x = torch.from_numpy(np.ascontiguousarray(seqs[start:start + rows, :-1])).to(device)
            out[start:start + len(x)] = torch.log_softmax(model(x).float(), dim=-1).cpu().numpy()
    return out


def _key(settings: dict, corpus_meta: dict, tokenizer_fingerprint: str) -> str:
    import torch

    parts = {"format": FORMAT, "rows": [ROWS, GPU_ROWS], "torch": torch.__version__, "device": _device().type,
             "corpus": corpus_meta["corpus_fingerprint"], "tokenizer": tokenizer_fingerprint,
             **{k: v for k, v in settings.items() if k not in ("repeats", "text_field", "corpus", "tokenizer")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _device():
    """CUDA when there is one (the paper-sized generators need it), else the CPU; part of the key (draws differ)."""
    from scalingkit.device import resolve_device

    return resolve_device("auto")


def _autocast(device):
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


# --------------------------------------------------------------------------------------------- training

def train_generator(text: TextFamily, settings: dict, progress: bool | None = None):
    """The generator GPT trained on `text`'s windows (returns (model, mean loss over the last tenth of steps))."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from scalingkit.model.gpt import GPTConfig, build_model
    from scalingkit.progress import resolve
    from scalingkit.train.engine import learning_rate

    context, batch = settings["context"], settings["batch"]
    steps = settings["generator_tokens"] // (batch * context)
    if steps < 1:
        raise UserError(f"key 'generator_tokens' ({settings['generator_tokens']}) is less than one step of {batch} x {context}")
    cfg = GPTConfig(vocab_size=text.vocab_size, n_layer=settings["layers"], d_model=settings["width"], context=context)
    model, parameterisation = build_model(cfg, "sp", settings["seed"])
    device = _device()
    model.to(device)
    optimiser = torch.optim.AdamW(parameterisation.param_groups(model, settings["lr"], 0.01), lr=settings["lr"],
                                  betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")
    rng = np.random.default_rng([3, settings["seed"]])
    tail = []
    for step in tqdm(range(steps), desc=f"training generator ({settings['layers']} layers)",
                     disable=not resolve(progress), leave=False):
        lr_now = learning_rate(step, steps, settings["lr"], 0.02)
        for group in optimiser.param_groups:
            group["lr"] = lr_now * group.get("lr_scale", 1.0)
        seqs = torch.from_numpy(text.sample(batch, context + 1, rng)).to(device)
        with _autocast(device):
            logits = model(seqs[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), seqs[:, 1:].flatten())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        if step >= steps - max(1, steps // 10):
            tail.append(loss.detach())
        if (step % 100 == 0 or step == steps - 1) and not math.isfinite(loss.item()):  # a sync now and then
            raise UserError(f"the generator diverged at step {step} (training loss {loss.item()}): lower key 'lr'")
    return model.eval(), float(torch.stack(tail).mean())


# --------------------------------------------------------------------------------------------- sampling

class PrefixDecoder:
    """Next-token logits for a batch of sequences fed one position at a time, from position 0.

    The GPT's own layers with a key/value cache: the logits after feeding x_0..x_t equal model(x[:, :t + 1])[:, -1]
    (up to round-off), at the cost of one position per step instead of the whole prefix.
    """

    def __init__(self, model, rows: int):
        import torch

        self.model, cfg = model, model.cfg
        shape = (rows, cfg.n_head, cfg.context, cfg.d_head)
        device = model.wte.weight.device
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # what autocast makes of k and v
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in model.blocks]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in model.blocks]
        self.t = 0

    def step(self, tokens):
        """Feed the tokens at the next position (a LongTensor of shape (rows,)); returns the next logits."""
        import torch.nn.functional as F

        from scalingkit.model.gpt import apply_rotary

        m, t = self.model, self.t
        cos, sin = m.rope_cos[t:t + 1], m.rope_sin[t:t + 1]
        x = m.wte(tokens)[:, None, :]
        for block, keys, values in zip(m.blocks, self.keys, self.values):
            attn = block.attn
            b, _, d = x.shape
            q, k, v = (z.view(b, 1, attn.n_head, attn.d_head).transpose(1, 2)
                       for z in attn.qkv(block.ln_1(x)).split(d, dim=2))
            keys[:, :, t], values[:, :, t] = apply_rotary(k, cos, sin)[:, :, 0], v[:, :, 0]
            y = F.scaled_dot_product_attention(apply_rotary(q, cos, sin), keys[:, :, :t + 1], values[:, :, :t + 1],
                                               scale=attn.attn_scale)  # one query: every cached key is in its past
            x = x + attn.proj(y.transpose(1, 2).reshape(b, 1, d))
            x = x + block.mlp(block.ln_2(x))
        self.t += 1
        return F.linear(m.ln_f(x)[:, 0], m.wte.weight) * m.readout_scale


def generate(model, n_seq: int, first: np.ndarray, seed: int, rows: int = ROWS, progress: bool | None = None):
    """n_seq sequences of context + 1 tokens at temperature 1: x_0 drawn from `first` (probabilities over the
    vocabulary), x_1.. from the model given the prefix. Returns (int64 array, per-position mean entropy (nats) of
    the next-token laws they were drawn from: the loss of the ideal predictor at positions 0..context-1)."""
    import torch
    from tqdm.auto import tqdm

    from scalingkit.progress import resolve

    context, device = model.cfg.context, model.wte.weight.device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    first = torch.as_tensor(first, dtype=torch.float64, device=device)
    out = np.empty((n_seq, context + 1), dtype=np.int64)
    entropy = torch.zeros(context, dtype=torch.float64, device=device)
    with torch.no_grad(), _autocast(device):
        for start in tqdm(range(0, n_seq, rows), desc="sampling from the generator", disable=not resolve(progress),
                          leave=False):
            b = min(rows, n_seq - start)
            decoder = PrefixDecoder(model, b)
            batch = torch.empty((b, context + 1), dtype=torch.int64, device=device)
            batch[:, 0] = token = torch.multinomial(first, b, replacement=True, generator=generator)
            for t in range(context):
                probs = torch.softmax(decoder.step(token).float(), dim=-1)
                batch[:, t + 1] = token = torch.multinomial(probs, 1, generator=generator)[:, 0]
                entropy[t] -= (probs * torch.log(probs.clamp_min(1e-30))).sum(dtype=torch.float64)
            out[start:start + b] = batch.cpu().numpy()
    return out, entropy.cpu().numpy() / n_seq


def _train_and_sample(tmp: Path, key: str, name: str, settings: dict, tokenizer, corpus_arrays) -> dict:
    from scalingkit.device import threads_per_worker

    with _torch_threads(threads_per_worker(1)):  # 1 unless SCALINGKIT_THREADS: see threads_per_worker
        return _train_and_sample_now(tmp, key, name, settings, tokenizer, corpus_arrays)


@contextmanager
def _torch_threads(n: int):
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _train_and_sample_now(tmp: Path, key: str, name: str, settings: dict, tokenizer, corpus_arrays) -> dict:
    import torch

    start = time.perf_counter()
    text_settings = {**settings, "repeats": 10**9}  # the generator may pass over a small corpus many times
    text = TextFamily(f"{name} (generator data)", text_settings, tokenizer, corpus_arrays)
    model, train_loss = train_generator(text, settings)
    device = model.wte.weight.device
    with torch.no_grad(), _autocast(device):
        held = torch.from_numpy(text.eval_sample(min(256, len(text.held_out) // (settings["context"] + 1)),
                                                 settings["context"] + 1, np.random.default_rng(0))).to(device)
        logits = model(held[:, :-1]).float()
        eval_loss = float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), held[:, 1:].flatten()))
    trained = time.perf_counter()
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    torch.save({"config": vars(model.cfg), "state_dict": state, "device": device.type}, tmp / "model.pt")
    length = settings["context"] + 1
    n_train = -(-settings["pool_tokens"] // length)
    # a window's first token follows the corpus's unigram law; the generator was never asked to predict it
    first = np.bincount(corpus_arrays.train, minlength=tokenizer.vocab_size) / len(corpus_arrays.train)
    pools, entropies = {}, []
    for part, n_seq, stream in (("train", n_train, 1), ("held_out", settings["eval_sequences"], 2)):
        seed = int(np.random.SeedSequence([settings["seed"], stream]).generate_state(1)[0])  # separate streams
        pools[part], h = generate(model, n_seq, first, seed, rows=GPU_ROWS if device.type == "cuda" else ROWS)
        entropies.append(h * n_seq)
    dtype = token_dtype(tokenizer.vocab_size)
    for part, seqs in pools.items():
        (tmp / f"{part}.bin").write_bytes(seqs.astype(dtype).tobytes())
    sampled = sum(s.size for s in pools.values())
    return {"dtype": dtype.name, "key": key, "documents": {"train": n_train, "held_out":
            settings["eval_sequences"]}, "corpus_fingerprint": corpus_arrays.meta["corpus_fingerprint"],
            "tokenizer_fingerprint": tokenizer.fingerprint,
            "generator": {"params": sum(p.numel() for p in model.parameters()), "train_loss": train_loss,
                          "eval_loss": eval_loss,
                          "entropy": float(np.mean(sum(entropies)) / (n_train + settings["eval_sequences"])),
                          "train_seconds": round(trained - start, 2),
                          "sample_tokens_per_s": round(sampled / (time.perf_counter() - trained), 1)}}
