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
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

import torch

from leapcast.models.chronos_t5 import ChronosT5
from leapcast.models.chronos_tokenizer import ChronosTokenizer
from leapcast.models.t5 import T5


def stack_layers(model: ChronosT5, times: int = 2) -> ChronosT5:
    """A new model with ``times`` copies of the encoder and of the decoder stacks, in order."""
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError(f"`times` must be an integer >= 1, got {times!r}")
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
