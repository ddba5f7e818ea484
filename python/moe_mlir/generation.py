"""Token generation with compiled decoders: `generate()`.

Works with the Hugging Face-style decoders the ONNX importer handles
(test/lib/hf_moe.py exports them): inputs `input_ids` [B, S],
`attention_mask` [B, past + S] (optional), `position_ids` [B, S]
(optional) and past_key_values tensors (every input whose name contains
"past", in manifest order); outputs `logits` [B, S, vocab] (else the first
output) and the present keys and values (every output whose name contains
"present", same order). The first call is the prefill with an empty cache;
each later call feeds one token per sequence and the previous presents. A
model without cache inputs is run on the whole sequence at every step.
"""

import sys
import time

import numpy as np

from .errors import InvalidArgumentError


class _Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a
    second. With `enabled=None` it appears only when stderr is a terminal
    and the run has taken more than a second, so short runs and logs stay
    clean."""

    def __init__(self, total, enabled):
        self.total, self.enabled = total, enabled
        self.start = time.perf_counter()
        self.done = self.drawn = 0
        self.last = None

    def update(self, done):
        self.done = done
        now = time.perf_counter()
        show = self.enabled
        if show is None:
            show = sys.stderr.isatty() and now - self.start > 1.0
        if show and (self.last is None or now - self.last >= 0.1 or done == self.total):
            self._draw(now)

    def _draw(self, now):
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        sys.stderr.write(f"\rgenerate [{'#' * filled}{'.' * (width - filled)}] "
                         f"{self.done}/{self.total} tokens, {rate:.1f} steps/s")
        sys.stderr.flush()
        self.last, self.drawn = now, self.done

    def close(self):
        if self.last is None:
            return
        if self.drawn != self.done:
            self._draw(time.perf_counter())
        sys.stderr.write("\n")
        sys.stderr.flush()


def _find(specs, name):
    for i, s in enumerate(specs):
        if s.name == name:
            return i
    return None


class _DecoderSignature:
    """Which inputs and outputs of a decoder play which role."""

    def __init__(self, module):
        sig = module.signature
        ins, outs = sig.inputs, sig.outputs
        self.ids = _find(ins, "input_ids")
        if self.ids is None:
            if ins and ins[0].dtype in ("i32", "i64"):
                self.ids = 0
            else:
                raise InvalidArgumentError(
                    f"generate(): function '{sig.name}' has no 'input_ids' input "
                    f"(inputs: {', '.join(sig.input_names)})")
        self.mask = _find(ins, "attention_mask")
        self.positions = _find(ins, "position_ids")
        self.past = [i for i, s in enumerate(ins) if "past" in s.name]
        self.present = [i for i, s in enumerate(outs) if "present" in s.name]
        if len(self.past) != len(self.present):
            raise InvalidArgumentError(
                f"generate(): {len(self.past)} past_key_values inputs but "
                f"{len(self.present)} present outputs")
        known = {self.ids, self.mask, self.positions, *self.past} - {None}
        other = [ins[i].name for i in range(len(ins)) if i not in known]
        if other:
            raise InvalidArgumentError(
                f"generate(): unknown decoder inputs {', '.join(other)}")
        self.logits = _find(outs, "logits")
        if self.logits is None:
            self.logits = 0
        # The cache's sequence dimension: the symbolic one after the batch.
        self.past_seq_dim = []
        for i in self.past:
            spec = ins[i]
            dims = [d for d in range(1, len(spec.shape)) if isinstance(spec.shape[d], str)]
            if len(dims) != 1:
                raise InvalidArgumentError(
                    f"generate(): cache input '{spec.name}' {spec} needs exactly "
                    "one symbolic sequence dimension after the batch (export the "
                    "decoder with dynamic axes)")
            self.past_seq_dim.append(dims[0])
        self.inputs = ins


def _select(logits, do_sample, temperature, top_k, top_p, rng):
    """Next tokens [B] from last-position logits [B, V]."""
    if not do_sample:
        return np.argmax(logits, axis=-1)
    scores = logits.astype(np.float64) / max(temperature, 1e-6)
    if top_k is not None and 0 < top_k < scores.shape[-1]:
        kth = np.partition(scores, -top_k, axis=-1)[:, -top_k][:, None]
        scores = np.where(scores < kth, -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1)
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        # Keep the smallest prefix whose mass reaches top_p (at least one).
        keep_sorted = np.cumsum(sorted_probs, axis=-1) - sorted_probs < top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    return np.array([rng.choice(probs.shape[-1], p=p) for p in probs])


def generate(module, input_ids, max_new_tokens, *, attention_mask=None,
             do_sample=False, temperature=1.0, top_k=None, top_p=None,
             seed=None, eos_token_id=None, pad_token_id=None,
             use_cache=True, progress=None, return_scores=False):
    """Generates up to `max_new_tokens` tokens after `input_ids` [B, S] with a
    compiled decoder and returns the whole sequences [B, S + n] (a torch
    tensor when input_ids is one).

    Greedy by default; `do_sample=True` samples from softmax(logits /
    temperature), restricted to the `top_k` tokens and the `top_p` nucleus
    when given, with a numpy Generator seeded by `seed`. A sequence that
    emits `eos_token_id` is finished and continues with `pad_token_id`
    (default: eos); generation stops when every sequence is. `progress`:
    True / False forces the progress bar on or off (default: on when stderr
    is a terminal and the run takes over a second). `return_scores` also
    returns the last-position logits of every step [n, B, V].
    """
    module = getattr(module, "module", module)  # moe_mlir.torch.CompiledModule
    sig = _DecoderSignature(module)
    to_torch = type(input_ids).__module__.startswith("torch")
    ids = np.asarray(input_ids.cpu().numpy() if to_torch else input_ids)
    if ids.ndim != 2:
        raise InvalidArgumentError(f"input_ids must be [batch, sequence], got shape {ids.shape}")
    if max_new_tokens < 0:
        raise InvalidArgumentError("max_new_tokens must be >= 0")
    ins = sig.inputs
    ids = ids.astype(ins[sig.ids].numpy_dtype)
    batch, prompt = ids.shape
    if attention_mask is None:
        mask = np.ones((batch, prompt), dtype=np.int64)
    else:
        mask = np.asarray(attention_mask.cpu().numpy() if hasattr(attention_mask, "cpu")
                          else attention_mask)
    cached = use_cache and bool(sig.past)
    past = []
    if sig.past:
        for i, dim in zip(sig.past, sig.past_seq_dim):
            spec = ins[i]
            shape = [batch] + [0 if d == dim else spec.shape[d]
                               for d in range(1, len(spec.shape))]
            if any(isinstance(s, str) for s in shape):
                raise InvalidArgumentError(
                    f"generate(): cannot size the empty cache '{spec.name}' {spec}")
            past.append(np.zeros(shape, dtype=spec.numpy_dtype))

    rng = np.random.default_rng(seed)
    sequences = ids
    step_ids = ids
    finished = np.zeros(batch, dtype=bool)
    pad = eos_token_id if pad_token_id is None else pad_token_id
    scores = []
    bar = _Progress(max_new_tokens, progress)
    try:
        for step in range(max_new_tokens):
            past_len = sequences.shape[1] - step_ids.shape[1]
            feeds = [None] * len(ins)
            feeds[sig.ids] = step_ids
            if sig.mask is not None:
                feeds[sig.mask] = mask.astype(ins[sig.mask].numpy_dtype)
            if sig.positions is not None:
                positions = np.arange(past_len, past_len + step_ids.shape[1])
                feeds[sig.positions] = np.broadcast_to(
                    positions, step_ids.shape).astype(ins[sig.positions].numpy_dtype)
            for i, value in zip(sig.past, past):
                feeds[i] = value
            outs = module(*feeds)
            if not isinstance(outs, tuple):
                outs = (outs,)
            logits = outs[sig.logits][:, -1, :]
            if return_scores:
                scores.append(np.array(logits, dtype=np.float32))
            tokens = _select(logits, do_sample, temperature, top_k, top_p, rng)
            if eos_token_id is not None:
                tokens = np.where(finished, pad, tokens)
                finished |= tokens == eos_token_id
            tokens = tokens.astype(ids.dtype)[:, None]
            sequences = np.concatenate([sequences, tokens], axis=1)
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=mask.dtype)], axis=1)
            if cached:
                past = [outs[i] for i in sig.present]
                step_ids = tokens
            else:
                step_ids = sequences
            bar.update(step + 1)
            if eos_token_id is not None and finished.all():
                break
    finally:
        bar.close()
    result = sequences
    if to_torch:
        import torch
        result = torch.from_numpy(sequences)
    if return_scores:
        return result, np.stack(scores) if scores else np.zeros((0, batch, 0), np.float32)
    return result
