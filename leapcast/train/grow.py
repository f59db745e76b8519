"""Grow a trained model instead of training a bigger one from scratch.

Progressive stacking (Gong et al., ICML 2019; Du et al., arXiv 2405.15319):
an L-layer stack becomes the 2L-layer stack l1..lL, l1..lL. The copy starts
close to what the shallow model computes, so training continues from its
loss instead of from scratch, which makes a deeper target cheap on a CPU.

Re-binning: a model trained with coarse bins moves to finer ones (more
tokens, or a narrower range) by giving each new bin the embedding of its
value interpolated between the old bins around it. With tied embeddings the
output logits are interpolated the same way, so the re-binned model starts
as a smoothed copy of the coarse one rather than from random bins.

Re-bucketing: T5's relative position bias has 32 buckets, exact only for
offsets below 8 in the encoder (16 in the decoder) and logarithmic beyond, so
offsets 12..15 share one bias. A head that looks back one season finds a
quarter's offset (4) exactly but not a month's (12). With more buckets the
exact range grows (128: below 32 and 64); each new bucket starts with the bias
its offsets had, so the re-bucketed model computes what it did before.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch

from leapcast.checks import check_int
from leapcast.models.chronos_t5 import ChronosT5
from leapcast.models.chronos_tokenizer import ChronosTokenizer
from leapcast.models.t5 import T5, relative_position_bucket


def stack_layers(model: ChronosT5, times: int = 2) -> ChronosT5:
    """A new model with ``times`` copies of the encoder and of the decoder stacks, in order."""
    times = check_int(times, "times", must="an integer >= 1")
    cfg = model.net.cfg
    grown_cfg = replace(cfg, num_layers=cfg.num_layers * times, num_decoder_layers=cfg.num_decoder_layers * times)
    net = T5(grown_cfg)
    source = model.net
    with torch.no_grad():
        for name in ("embed", "enc_bias", "dec_bias", "enc_norm", "dec_norm"):
            getattr(net, name).load_state_dict(getattr(source, name).state_dict())
        if source.lm_head is not None:
            net.lm_head.load_state_dict(source.lm_head.state_dict())
        for grown, layers in ((net.enc_layers, source.enc_layers), (net.dec_layers, source.dec_layers)):
            for i, layer in enumerate(grown):
                layer.load_state_dict(copy.deepcopy(layers[i % len(layers)].state_dict()))
    return ChronosT5(net, model.chronos, name=model.name)


def rebin(model: ChronosT5, n_tokens: int, low_limit: float, high_limit: float) -> ChronosT5:
    """A copy of ``model`` whose tokenizer has ``n_tokens`` bins over [low_limit, high_limit]
    (``model`` itself when its bins are those already).

    Special tokens keep their rows; a bin token's row is the old rows
    interpolated linearly at the new bin's value (values beyond the old range
    take the outermost old bin). Everything else is copied.
    """
    c = model.chronos
    if (c.n_tokens, c.low_limit, c.high_limit) == (n_tokens, low_limit, high_limit):
        return model
    chronos = replace(model.chronos, n_tokens=n_tokens, low_limit=low_limit, high_limit=high_limit)
    special = chronos.n_special_tokens
    old_values = model.tokenizer.centers.double().cpu().numpy()  # old id special+1+i <-> old_values[i]
    new_values = ChronosTokenizer(chronos).centers.double().numpy()
    cfg = replace(model.net.cfg, vocab_size=n_tokens)
    net = T5(cfg)
    source = model.net
    state = {k: v for k, v in source.state_dict().items() if not k.startswith(("embed.", "lm_head."))}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(("embed.", "lm_head.")) for k in missing), (missing, unexpected)

    def remap(rows: torch.Tensor) -> torch.Tensor:  # [V_old, D] -> [V_new, D]
        old = rows[special + 1 :].detach().double().cpu().numpy()
        new = np.stack([np.interp(new_values, old_values, old[:, d]) for d in range(old.shape[1])], axis=1)
        out = torch.empty(n_tokens, rows.shape[1], dtype=rows.dtype, device=rows.device)
        out[: special + 1] = rows[: special + 1]  # pad, EOS and the never-drawn first bin id
        out[special + 1 :] = torch.from_numpy(new).to(rows)
        return out

    with torch.no_grad():
        net.embed.weight.copy_(remap(source.embed.weight))
        if source.lm_head is not None:
            net.lm_head.weight.copy_(remap(source.lm_head.weight.t()).t())
    return ChronosT5(net, chronos, name=model.name)


def rebucket(model: ChronosT5, num_buckets: int) -> ChronosT5:
    """A copy of ``model`` with ``num_buckets`` relative-position buckets (``model`` itself if it has those).

    A new bucket's bias is the old bias of the offsets it covers (averaged over
    offsets up to twice the maximum distance, where buckets differ), so every
    offset keeps the bias it had when the new buckets split old ones.
    """
    cfg = model.net.cfg
    if cfg.relative_attention_num_buckets == num_buckets:
        return model
    if num_buckets < 2 or num_buckets % 2:
        raise ValueError(f"`num_buckets` must be an even number >= 2, got {num_buckets}")
    new_cfg = replace(cfg, relative_attention_num_buckets=num_buckets)
    net = T5(new_cfg)
    state = {k: v for k, v in model.net.state_dict().items() if not k.startswith(("enc_bias.", "dec_bias."))}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and sorted(missing) == ["dec_bias.weight", "enc_bias.weight"], (missing, unexpected)
    reach = 2 * cfg.relative_attention_max_distance
    rel = torch.arange(-reach, reach + 1)
    with torch.no_grad():
        for name, bidirectional in (("enc_bias", True), ("dec_bias", False)):
            old_table = getattr(model.net, name).weight  # [B_old, H]
            old = relative_position_bucket(
                rel, bidirectional, cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
            )
            new = relative_position_bucket(rel, bidirectional, num_buckets, cfg.relative_attention_max_distance)
            table = getattr(net, name).weight  # [B_new, H]
            table.zero_()
            for b in range(num_buckets):
                hit = new == b
                if hit.any():
                    table[b] = old_table[old[hit]].mean(0)
    return ChronosT5(net, model.chronos, name=model.name)
