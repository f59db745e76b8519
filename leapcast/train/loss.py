"""The pretraining losses: cross-entropy of the horizon tokens, teacher forced (Chronos-T5); the reference's
combined loss of the next patch (Toto, ``patch_loss``).

With ``sigma > 0`` the target of a bin token is a Gaussian over the
neighbouring bins (HL-Gauss, Imani & White 2018; Farebrother et al., arXiv
2403.03950): the bins are ordered, and spreading the label over neighbours
teaches that order from far fewer examples than one-hot labels do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from leapcast.models.heads import StudentTMixture
from leapcast.models.t5 import T5
from leapcast.models.toto_net import TotoNet
from leapcast.train.patches import PatchBatch


def loss_on(
    net: T5, tokens: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, sigma: float = 0.0, first_bin: int = 2
) -> torch.Tensor:
    """Cross-entropy of the horizon tokens, teacher forced: decoder inputs = [start, labels[:-1]].

    sigma > 0: bin tokens (>= first_bin) get Gaussian soft targets of that width in bins.
    """
    inputs = torch.cat([torch.zeros_like(labels[:, :1]), labels[:, :-1].clamp(min=0)], dim=1)
    logits = net(tokens, mask, inputs)  # [B, H+1, V]
    if sigma <= 0:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    return soft_label_loss(logits, labels, sigma, first_bin)


def soft_label_loss(logits: torch.Tensor, labels: torch.Tensor, sigma: float, first_bin: int) -> torch.Tensor:
    """Mean cross-entropy against Gaussian-smoothed targets; logits [B, T, V], labels [B, T] (-100 ignored)."""
    vocab = logits.shape[-1]
    valid = labels >= 0
    logp = F.log_softmax(logits.float(), dim=-1)  # [B, T, V]
    width = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-width, width + 1)  # [W]
    centre = labels.clamp(min=0)[..., None]
    idx = centre + offsets  # [B, T, W]
    is_bin = centre >= first_bin
    inside = (idx >= first_bin) & (idx < vocab) & is_bin
    weight = torch.exp(-0.5 * (offsets / sigma) ** 2) * inside
    weight = torch.where(is_bin, weight, (offsets == 0).to(weight.dtype).expand_as(weight))  # special tokens: one-hot
    weight = weight / weight.sum(-1, keepdim=True)
    picked = logp.gather(-1, idx.clamp(0, vocab - 1))  # [B, T, W]
    return -(weight * picked).sum(-1)[valid].mean()


def patch_loss(net: TotoNet, batch: PatchBatch, lambda_nll: float, delta: float) -> torch.Tensor:
    """The reference's training loss (``toto-ts``'s CombinedLoss) on teacher-forced patches, in the scaled space:
    lambda_nll x the mixture's negative log-likelihood of each next value + (1 - lambda_nll) x
    log(1 + ((mean - value) / delta)^2 / 2) (Barron's robust loss, alpha 0), averaged over observed values."""
    h = net(batch.inputs)[:, :, :-1]  # [B, 1, L - 1, D]: the last patch predicts nothing in the crop
    head = StudentTMixture(*(t.squeeze(1) for t in net.distribution(h)))  # [B, L - 1, P, C] each
    targets, observed = batch.targets.squeeze(1), batch.observed.squeeze(1)  # [B, L - 1, P]
    nll = -head.value_log_prob(targets).float()
    robust = torch.log1p(0.5 * ((head.mean() - targets) / delta) ** 2)
    return (lambda_nll * nll + (1 - lambda_nll) * robust)[observed].mean()
