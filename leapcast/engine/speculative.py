"""Propose -> verify -> commit, batched over rows with their own positions.

Each row (series x sample path) accepts its own number of steps per target
pass; positions advance per row, and a rejection only moves a position: the
stale cache entries past it are masked by causality and overwritten next pass.
The target runs once per iteration over k+1 positions for all rows, which
reads its weights once for up to k+1 steps. A series whose rows have all
reached the horizon leaves the batch (its caches are dropped); a finished row
of a series still decoding rides along, because the rows of a series share
one block of cross-attention.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from leapcast.engine.proposers.base import ProposalInput, Proposer
from leapcast.engine.sampling import SamplingConfig, probabilities, sample
from leapcast.engine.streams import ACCEPT, RESIDUAL, SAMPLE, RowStreams
from leapcast.engine.adaptive import KChooser
from leapcast.engine.verifiers import verify
from leapcast.models.base import StepModel, Tokenized


@dataclass(frozen=True)
class SpecConfig:
    """How speculation runs.

    k: steps proposed per target pass (the most, when adaptive).
    adaptive: pick k in {0, 1, 2, 4, ..., k} per iteration from the measured time
        per committed step (mean progress of the active rows: an optimistic
        proxy, since a window lasts as long as its slowest row) (k = 0 is plain decoding: speculation switches itself
        off where it does not pay, e.g. large batches on a CPU). The default,
        so that a draft never makes a forecast much slower; False: always k.
        Because k follows the clock, a seeded forecast is reproducible only
        in distribution while k > 0 is being tried; use adaptive=False (or no
        draft) for paths that repeat exactly.
    stop_below: the proposer stops early once the draft's own top probability,
        averaged over the rows, falls below this (SpecDec++-style); None: never.
    Neither choice changes the output distribution: both depend only on the
    draft and the clock, never on the target's verdict for the current steps.
    """

    k: int = 4
    adaptive: bool = True
    stop_below: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= 32:
            raise ValueError(f"`k` must be an integer in 1..32, got {self.k!r}")
        if self.stop_below is not None and not 0 < self.stop_below < 1:
            raise ValueError(f"`stop_below` must be in (0, 1) or None, got {self.stop_below!r}")


@dataclass
class SpecStats:
    """Counts over all rows and windows of one forecast.

    A *draft* is one proposal of k steps for one row; ``mean_accepted_length``
    = 1 + accepted / drafts is the steps a row gains per target pass.
    """

    k: int
    target_passes: int = 0
    drafts: int = 0
    drafted_steps: int = 0
    accepted_steps: int = 0
    accepted_per_position: list[int] = field(default_factory=list)  # [k] drafts whose i-th step was kept
    draft_s: float = 0.0
    verify_s: float = 0.0
    other_s: float = 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_steps / self.drafted_steps if self.drafted_steps else 0.0

    @property
    def mean_accepted_length(self) -> float:
        return 1 + self.accepted_steps / self.drafts if self.drafts else 1.0

    def merge(self, other: "SpecStats") -> None:
        for name in ("target_passes", "drafts", "drafted_steps", "accepted_steps", "draft_s", "verify_s", "other_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if not self.accepted_per_position:
            self.accepted_per_position = [0] * len(other.accepted_per_position)
        self.accepted_per_position = [a + b for a, b in zip(self.accepted_per_position, other.accepted_per_position)]

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items()}
        out.update(acceptance_rate=self.acceptance_rate, mean_accepted_length=self.mean_accepted_length)
        return out


def speculative_window(
    model: StepModel,
    proposer: Proposer,
    batch: Tokenized,
    num_steps: int,
    sampling: SamplingConfig,
    spec: SpecConfig,
    streams: RowStreams,
    step_offset: int = 0,
    chooser: KChooser | None = None,
) -> tuple[torch.Tensor, SpecStats]:
    """Sample ``num_steps`` steps for every row -> (steps [B, S, num_steps] long, stats).

    ``streams``: the B * S rows' random streams; window step t is horizon step
    ``step_offset + t``. Random numbers by role (``leapcast.engine.streams``):
    the proposal for step t and the bonus step at t read SAMPLE at t, the
    acceptance test of step t ACCEPT at t, the step recovered at t RESIDUAL at t,
    so k = 0 and a draft identical to the target give the plain forecast.
    ``chooser`` picks k per iteration when ``spec.adaptive`` (a fresh one if None).
    """
    t_start = time.perf_counter()
    b, s, k_max = batch.tokens.shape[0], sampling.num_samples, spec.k
    rows = b * s
    capacity = num_steps + k_max + 1
    state = model.setup(batch, rows_per_series=s, max_steps=capacity)
    proposer.start(batch, state, capacity)
    if spec.adaptive and chooser is None:
        chooser = KChooser(k_max)
    if not spec.adaptive:
        chooser = None
    stats = SpecStats(k=k_max, accepted_per_position=[0] * k_max)
    committed = torch.zeros(rows, capacity, dtype=torch.long)
    n = torch.zeros(rows, dtype=torch.long)
    pending = torch.full((rows,), model.start_token, dtype=torch.long)
    result = torch.zeros(b, s, num_steps, dtype=torch.long)
    alive = torch.arange(b)  # series still decoding, in the order of the rows below
    while True:
        done = (n >= num_steps).view(len(alive), s).all(dim=1)  # [B_alive]
        if bool(done.any()):  # finished series leave the batch: they stop costing compute
            result[alive[done]] = committed.view(len(alive), s, -1)[done, :, :num_steps]
            keep = (~done).nonzero().squeeze(1)
            if len(keep) == 0:
                break
            rows_kept = (keep[:, None] * s + torch.arange(s)).reshape(-1)
            state = model.select_series(state, keep)
            proposer.select(keep, rows_kept)
            committed, n, pending = committed[rows_kept], n[rows_kept], pending[rows_kept]
            streams = streams.select(rows_kept)
            alive = alive[keep]
            rows = len(rows_kept)
        active = n < num_steps  # [R]
        k = chooser.choose() if chooser else k_max
        if k == 0 and chooser is not None and chooser.off and not chooser.queue:  # settled on plain: finish without bookkeeping
            stats.target_passes += _plain_tail(model, state, committed, n, pending, num_steps, sampling, streams, step_offset)
            result[alive] = committed.view(len(alive), s, -1)[:, :, :num_steps]
            break
        at = n.clamp(max=num_steps)  # finished rows ride along in bounds; their results are dropped
        ahead = step_offset + at[:, None] + torch.arange(k + 1)  # [R, k+1] horizon steps of this pass
        u_sample = streams.uniforms(ahead, SAMPLE)  # proposals at 0..k-1, the bonus at k
        t0 = time.perf_counter()
        if k > 0:
            proposal = proposer.propose(ProposalInput(pending, at, committed, k, u_sample[:, :k], sampling, spec.stop_below))
            steps, draft_probs = proposal.steps, proposal.probs
        else:
            steps, draft_probs = torch.zeros(rows, 0, dtype=torch.long), None
        kp = steps.shape[1]  # <= k when the proposer stopped early
        t1 = time.perf_counter()
        uniform = bool((at == at[0]).all())  # rows in step (always so while k = 0): the cheaper slice path
        logits = model.decode(torch.cat([pending[:, None], steps], dim=1), int(at[0]) if uniform else at, state)  # [R, kp+1, V]
        if kp > 0:
            target_probs = probabilities(logits, sampling, model.banned_tokens)
            u_accept = streams.uniforms(ahead[:, :kp], ACCEPT)
            verdict = verify(steps, draft_probs, target_probs, u_accept, u_sample[:, kp], streams.uniforms(ahead[:, :kp], RESIDUAL))
            accepted, next_step = verdict.accepted, verdict.next_step
        else:  # speculation off: a plain step
            accepted, next_step = torch.zeros(rows, dtype=torch.long), sample(logits[:, 0], sampling, u_sample[:, 0], model.banned_tokens)
        t2 = time.perf_counter()

        new = torch.cat([steps, torch.zeros_like(pending[:, None])], dim=1).scatter_(1, accepted[:, None], next_step[:, None])
        offsets = torch.arange(kp + 1)
        write = active[:, None] & (offsets[None, :] <= accepted[:, None])  # [R, kp+1]
        where = (at[:, None] + offsets).clamp(max=capacity - 1)
        committed.scatter_(1, where, torch.where(write, new, committed.gather(1, where)))
        pending = torch.where(active, next_step, pending)
        gained = torch.where(active, accepted + 1, 0)
        n = n + gained

        stats.target_passes += 1
        if kp > 0:
            n_active = int(active.sum())
            kept = torch.where(active, accepted, 0)
            stats.drafts += n_active
            stats.drafted_steps += n_active * kp
            stats.accepted_steps += int(kept.sum())
            for i in range(kp):
                stats.accepted_per_position[i] += int((kept > i).sum())
        stats.draft_s += t1 - t0
        stats.verify_s += t2 - t1
        if chooser:
            # The mean over active rows, not the least: with 20+ rows some row nearly always
            # rejects at once, and the least would make every k > 0 look like one step a pass.
            chooser.record(k, time.perf_counter() - t0, float(gained[active].float().mean()))
    stats.other_s = time.perf_counter() - t_start - stats.draft_s - stats.verify_s
    return result, stats


def _plain_tail(model, state, committed, n, pending, num_steps, sampling, streams: RowStreams, step_offset: int) -> int:
    """Plain steps for every row until all reach ``num_steps``, written into ``committed`` [R, T]
    in place. Returns the number of target passes.

    Each pass, only the least advanced rows commit their step; rows ahead wait
    (their step is dropped, by position, never by value), so after at most
    k + 1 passes all rows stand together and take the cheaper slice path.
    Every row keeps its own prefix and samples on from the target: exact.
    Finished rows ride along at the common position; their caches are not read again.
    """
    passes = num_steps - int(n.min())
    u = streams.window(step_offset, num_steps)  # [R, num_steps]: a row's step t reads SAMPLE at t
    for t in range(passes):
        cur = int(n.min())
        pos = torch.where(n < num_steps, n, cur)
        uniform = bool((pos == cur).all())
        logits = model.decode(pending[:, None], cur if uniform else pos, state)[:, -1]  # [R, V]
        step = sample(logits, sampling, u[:, cur], model.banned_tokens)
        move = n == cur
        committed[:, cur] = torch.where(move, step, committed[:, cur])
        pending = torch.where(move, step, pending)
        n = n + move.long()
    return passes
