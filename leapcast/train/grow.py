"""Grow a trained model deeper by stacking its layers, then keep training.

Progressive stacking (Gong et al., ICML 2019; Du et al., arXiv 2405.15319):
an L-layer stack becomes the 2L-layer stack l1..lL, l1..lL. The copy starts
close to what the shallow model computes, so training continues from its
loss instead of from scratch, which makes a deeper target cheap on a CPU.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from leapcast.models.chronos_t5 import ChronosT5
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
