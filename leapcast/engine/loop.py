"""The decode loop: propose -> verify -> commit, per row; plain decoding is its k = 0 case.

Rows (series x sample paths) step together with their own positions. Each
iteration the proposer offers k steps (k = 0: none), the model scores k + 1
positions for every row in one pass and returns their heads, the verifier
keeps a prefix of the proposal and adds one step of its own (the recovered
or bonus step; at k = 0, the plainly sampled step), and positions move on.
A rejection only moves a position back: the stale cache entries past it are
masked by causality and overwritten by the next pass.

Series join (``add``) and leave (when all their rows reach their goal)
between iterations, each with its own number of rows, sampling settings and
horizon: what continuous batching needs. Rows with different sampling
settings decode plainly while they share the loop (a draft proposes under
one setting); speculation resumes once they have parted. Random numbers come from the rows'
counter-based streams (``leapcast.engine.streams``) at the horizon step they
commit, so every k = 0 route gives the same seeded forecast, and a draft equal
to the target with fixed k gives it too.

Steps keep the head's own type ([R] token ids for a categorical head,
[R, P] values for a patch head); the model turns them into values when a
series leaves (``model.values``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import torch

from leapcast.checks import check_int
from leapcast.engine.adaptive import KChooser
from leapcast.engine.proposers.base import ProposalInput, Proposer
from leapcast.engine.speculative import SpecConfig, SpecStats
from leapcast.engine.streams import ACCEPT, RESIDUAL, SAMPLE, RowStreams, at_columns, column_block
from leapcast.engine.verifiers import verify
from leapcast.engine.verifiers.continuous import verify_patches, verify_points
from leapcast.models.base import graphs_built
from leapcast.models.rows import fill_order, pad_right
from leapcast.models.sampling import SamplingConfig


class Decoder:
    """Rows of many series decoding together; see the module docstring.

    >>> dec = Decoder(model)
    >>> ids = dec.add(contexts, num_steps=12, sampling=SamplingConfig(), streams=RowStreams.for_series(0, [0, 1], 20))
    >>> values = dec.run()  # {series id: [S, 12 * patch_size] float32}
    """

    def __init__(
        self,
        model,
        proposer: Proposer | None = None,
        spec: SpecConfig | None = None,
        chooser: KChooser | None = None,
        catch_up: bool = True,
        keep_finished: bool = False,
        min_capacity: int = 0,
    ) -> None:
        """``catch_up``: how plain passes treat rows at different positions. True: rows ahead wait while the least
        advanced catch up (rows a few steps apart after speculative passes soon stand together again, and plain
        decoding takes its fast path). False: every unfinished row takes its step each pass at its own position,
        for continuous batching, where series join at step 0 beside rows far ahead that should not wait for them.
        Either way a row draws the numbers of the steps it commits, so the forecasts are the same.

        ``keep_finished``: the rows of a series that finished stay, inactive, until ``compact`` (its values are
        returned when it finishes either way).

        ``min_capacity``: decoder positions every join's caches get at least: with one capacity for all, series
        joining write their rows into the room the caches keep (``models.rows.append_rows``) instead of a copy of
        every cache (continuous batching)."""
        self.model = model
        self.catch_up = catch_up
        self.keep_finished = keep_finished
        self.min_capacity = check_int(min_capacity, "min_capacity", low=0)
        self.proposer = proposer
        self.spec = spec or SpecConfig()
        self.chooser = chooser if (proposer is not None and self.spec.adaptive) else None
        if proposer is not None and self.spec.adaptive and chooser is None:
            self.chooser = KChooser(self.spec.k)
        self.k_max = self.spec.k if proposer is not None else 0
        self.stats = SpecStats(k=self.spec.k, accepted_per_position=[0] * self.spec.k)
        self.samplings: list[SamplingConfig] = []
        self.rows: _Rows | None = None
        self.state = None
        self._next_id = 0
        self._graphs = 0  # graphs torch.compile had built when this pass began (``_timing``)

    @property
    def busy(self) -> bool:
        return self.rows is not None

    def _live(self) -> _Rows:
        """The rows decoding: ``step`` and its parts run only while ``busy``."""
        assert self.rows is not None, "no series are decoding"
        return self.rows

    def add(
        self,
        contexts: torch.Tensor,
        num_steps: int | Sequence[int],
        sampling: SamplingConfig,
        streams: RowStreams,
        first_step: int | Sequence[int] = 0,
    ) -> list[int]:
        """Series join: contexts [B, T] float32, ``sampling.num_samples`` rows each, ``num_steps`` steps from
        horizon step ``first_step`` (rollout keeps windows within the model's prediction_length); ``streams`` for their B * S rows.
        ``num_steps`` and ``first_step`` may give one value per series (one join, one merge of the caches, for
        series of many horizons). Returns the series' ids, the keys of ``run`` / ``step``'s results."""
        b, s = contexts.shape[0], sampling.num_samples
        steps = _per_series(num_steps, b, "num_steps", low=1)
        firsts = _per_series(first_step, b, "first_step", low=0)
        if len(streams) != b * s:
            raise ValueError(f"`streams` has {len(streams)} rows for {b} series x {s} samples")
        capacity = max(max(steps) + self.k_max + 1, self.min_capacity)
        state = self.model.prefix(contexts, s, capacity)
        if self.proposer is not None:
            if self.rows is None:
                self.proposer.start(contexts, s, state, capacity)
            else:
                self.proposer.join(contexts, s, state, capacity)
        ids = list(range(self._next_id, self._next_id + b))
        self._next_id += b
        known = [_warping(k) for k in self.samplings]  # rows differing only in sample count or seed draw alike
        if _warping(sampling) not in known:
            self.samplings.append(sampling)
            known.append(_warping(sampling))
        group = known.index(_warping(sampling))
        device = self.model.device  # every tensor of the loop lives there; probabilities and uniforms in float32
        rows = _Rows.new(
            self.model.start_inputs(state).to(device),
            streams,
            torch.tensor(ids, device=device).repeat_interleave(s),
            torch.tensor(steps, device=device).repeat_interleave(s),
            torch.tensor(firsts, device=device).repeat_interleave(s),
            group,
            capacity,
            self.k_max,
        )
        if self.rows is None:
            self.rows, self.state = rows, state
        else:
            self.rows, self.state = self.rows.merge(rows), self.model.merge(self.state, state)
        return ids

    def run(self) -> dict[int, torch.Tensor]:
        """Iterate until every series has left -> {series id: values [S, num_steps * patch_size]}."""
        out: dict[int, torch.Tensor] = {}
        while self.busy:
            out.update(self.step())
        return out

    def step(self) -> dict[int, torch.Tensor]:
        """One iteration (one target pass) -> the series that finished in it, as in ``run``."""
        rows = self._live()
        t0 = time.perf_counter()
        self._graphs = graphs_built()  # a pass that compiled is not timed for the chooser
        k = self._choose_k()
        if k == 0 and rows.together is not None:
            return self._plain_together(rows.together, t0)
        active = rows.n < rows.goal  # [R]
        if k == 0:
            return self._plain_apart(active, t0)
        at = torch.minimum(rows.n, rows.goal)  # finished rows of a running series ride along in bounds
        lockstep = bool((at == at[0]).all())
        positions = int(at[0]) if lockstep else at
        new, accepted, t1 = self._speculate(k, at, positions)
        t2 = time.perf_counter()
        rows.commit(new, accepted, active, lockstep and bool(active.all()))
        gained = torch.where(active, accepted + 1, 0)
        self._record(k, new.shape[1] - 1, active, accepted, gained, t0, t1, t2)
        return self._finished()

    def _plain_apart(self, active: torch.Tensor, t0: float) -> dict[int, torch.Tensor]:
        """k = 0 with rows at different positions (after speculative passes, or joined later): with ``catch_up``
        only the least advanced rows take their step and the others wait, so that within a few passes every row
        stands at one position and plain decoding takes its fast path again; without it every active row takes
        its step. Both are exact: a row's numbers follow its steps."""
        rows = self._live()
        cur = int(torch.where(active, rows.n, rows.n.max()).min())  # the least advanced active row
        at = torch.where(active, rows.n, cur)  # finished rows ride along at cur; their steps are dropped
        if not self.catch_up and bool(active.any()):
            at = _beside_active(rows.n, active)  # they ride where their neighbours stand: one run of positions
        together = bool((at == cur).all())
        head = self.model.step(self.state, rows.pending[:, None], cur if together else at)  # [R, 1]
        new = self._sample(head, at)  # [R, 1, *shape]
        move = active & (rows.n == cur) if self.catch_up else active
        rows.commit(new, torch.zeros_like(at), move, together and bool(move.all()))
        goal = int(rows.goal[0])
        if (
            together
            and bool(move.all())
            and cur + 1 < goal
            and bool((rows.goal == goal).all())
            and bool((rows.group == rows.group[0]).all())
        ):
            rows.together, rows.together_goal = cur + 1, goal  # from here on: the fast path
        # a plain pass moves the slowest rows a step, and the slowest set the window's length: one step a pass for the chooser
        self._record(0, 0, active, torch.zeros_like(at), active.long(), t0, t0, time.perf_counter())
        return self._finished()

    def _plain_together(self, t: int, t0: float) -> dict[int, torch.Tensor]:
        """k = 0 with every row at one position, all going to one goal, one sampling setting: the same
        step as the general path, without its per-row bookkeeping (plain decoding's hot loop)."""
        rows = self._live()  # every row at position t (rows.together)
        head = self.model.step(self.state, rows.pending[:, None], t)  # [R, 1]
        new = head.sample(self.samplings[int(rows.group[0])], _Rand(rows, None, SAMPLE, at=t))  # [R, 1, *shape]
        rows.pending = new[:, 0].to(
            rows.committed.device
        )  # its own memory: a strided view would change the next product's rounding
        rows.committed[:, t] = rows.pending
        rows.n += 1
        rows.together = t + 1
        self.stats.target_passes += 1
        self.stats.passes_at_k[0] = self.stats.passes_at_k.get(0, 0) + 1
        self.stats.other_s += time.perf_counter() - t0
        if (chooser := self._timing()) is not None:
            chooser.record(0, time.perf_counter() - t0, 1.0)  # every row moved one step
        return self._finished() if t + 1 == rows.together_goal else {}

    def _timing(self) -> KChooser | None:
        """The chooser this pass's time goes to: None when there is none, it has settled, or torch.compile built a
        graph during the pass."""
        if self.chooser is None or self.chooser.settled or graphs_built() != self._graphs:
            return None
        return self.chooser

    def _choose_k(self) -> int:
        if self.k_max and len(self.samplings) > 1 and bool((self._live().group != self._live().group[0]).any()):
            return 0  # rows with other sampling settings decode together plainly; speculation resumes when they part
        if self.chooser is None:
            return self.k_max
        if self.chooser.settled:  # plain decoding won: no timing either
            return 0
        return self.chooser.choose()

    def _sample(self, head, at: torch.Tensor) -> torch.Tensor:
        """The step each row draws from ``head`` [R, 1] with its SAMPLE numbers at its position -> [R, 1, *shape]."""
        rows = self._live()
        rand = _Rand(rows, at[:, None], SAMPLE)
        groups = rows.group
        if len(self.samplings) == 1 or bool((groups == groups[0]).all()):
            return head.sample(self.samplings[int(groups[0])], rand)
        out = None
        for g in groups.unique().tolist():  # rows with other sampling settings draw apart
            idx = (groups == g).nonzero().squeeze(1)
            part = _head_rows(head, idx).sample(self.samplings[g], rand.rows(idx))
            out = part.new_zeros((len(groups), *part.shape[1:])) if out is None else out
            out[idx] = part
        assert out is not None  # rows of two settings or more: the loop ran
        return out

    def _speculate(self, k: int, at: torch.Tensor, positions) -> tuple[torch.Tensor, torch.Tensor, float]:
        rows = self._live()
        sampling = self._one_sampling()
        window = at[:, None] + torch.arange(k + 1, device=at.device)  # [R, k+1] window steps of this pass
        if self.model.head_kind != "categorical":
            return self._speculate_patches(k, at, positions, window, sampling)
        u_sample = rows.u(SAMPLE).gather(1, window)  # proposals at 0..k-1, the bonus at k
        assert self.proposer is not None  # k > 0 only with a proposer
        proposal = self.proposer.propose(
            ProposalInput(rows.pending, at, rows.committed, k, u_sample[:, :k], sampling, self.spec.stop_below)
        )
        steps, kp = proposal.steps, proposal.steps.shape[1]  # kp <= k when the proposer stopped early
        t1 = time.perf_counter()
        head = self.model.step(self.state, torch.cat([rows.pending[:, None], steps], dim=1), positions)  # [R, kp+1]
        verdict = verify(
            steps,
            proposal.probs,
            head.sorted(sampling),  # [R, kp+1, K] each
            rows.u(ACCEPT).gather(1, window[:, :kp]),
            u_sample[:, kp],
            rows.u(RESIDUAL).gather(1, window[:, :kp]),
        )
        new = torch.cat([steps, torch.zeros_like(steps[:, :1])], dim=1).scatter_(
            1, verdict.accepted[:, None], verdict.next_step[:, None]
        )
        return new, verdict.accepted, t1

    def _speculate_patches(self, k: int, at: torch.Tensor, positions, window: torch.Tensor, sampling: SamplingConfig):
        """The continuous twin of the categorical pass (``verifiers.continuous``): the draft draws each patch with
        the numbers plain sampling reads at its window step, the bonus patch is plain sampling's own draw, and a
        rejected position draws its residual from the RESIDUAL stream at that step."""
        rows = self._live()
        assert self.proposer is not None  # k > 0 only with a proposer
        proposal = self.proposer.propose(
            ProposalInput(
                rows.pending,
                at,
                rows.committed,
                k,
                rows.u(SAMPLE).gather(1, window[:, :k]),
                sampling,
                self.spec.stop_below,
                rand=lambda i: _Rand(rows, window[:, i : i + 1], SAMPLE),
            )
        )
        steps, kp = proposal.steps, proposal.steps.shape[1]
        t1 = time.perf_counter()
        head = self.model.step(self.state, torch.cat([rows.pending[:, None], steps], dim=1), positions)  # [R, kp+1]
        if (
            sampling.greedy or self.spec.tolerance is not None
        ):  # mean decoding: the target's mean patches, or a tolerance
            tau = self.spec.tolerance or 0.0
            scale = self.model.context_scale(self.state) if tau > 0 else None
            verdict = verify_points(steps, head, tau, scale)
            new = torch.cat([steps, torch.zeros_like(steps[:, :1])], dim=1)
            new[torch.arange(len(at), device=at.device), verdict.accepted] = verdict.next_step
            return new, verdict.accepted, t1
        if proposal.heads is None:
            raise ValueError(
                f"proposer {self.proposer.name!r} offers fixed patches, which exact verification of densities would "
                "always reject; use it with a tolerance on mean decoding (SpecConfig(tolerance=...), top_k=1)"
            )
        last = torch.full_like(at, kp)
        bonus = head.pick(last).sample(sampling, _Rand(rows, window[:, kp : kp + 1], SAMPLE))[:, 0]  # [R, *step]

        def residual_rand(idx: torch.Tensor, accepted: torch.Tensor):
            keys = rows.keys[RESIDUAL][idx].gather(1, (at[idx] + accepted)[:, None])  # [R', 1] at the rejections
            return lambda columns, sub: at_columns(keys[sub], columns)

        verdict = verify_patches(
            steps,
            proposal.heads,
            head,
            rows.u(ACCEPT).gather(1, window[:, :kp]),
            bonus,
            residual_rand,
            sampling,
            self.spec.max_residual_tries,
            active=rows.n < rows.goal,
        )
        new = torch.cat([steps, torch.zeros_like(steps[:, :1])], dim=1)
        new[torch.arange(len(at), device=at.device), verdict.accepted] = verdict.next_step
        self.stats.residual_tries += int(verdict.tries.sum())
        self.stats.residual_capped += int(verdict.capped.sum())
        return new, verdict.accepted, t1

    def _one_sampling(self) -> SamplingConfig:
        return self.samplings[int(self._live().group[0])]  # one setting: _choose_k keeps mixed rows at k = 0

    def _record(self, k, kp, active, accepted, gained, t0, t1, t2) -> None:
        st = self.stats
        st.target_passes += 1
        st.passes_at_k[kp] = st.passes_at_k.get(kp, 0) + 1
        if kp > 0:
            n_active = int(active.sum())
            kept = torch.where(active, accepted, 0)
            st.drafts += n_active
            st.drafted_steps += n_active * kp
            st.accepted_steps += int(kept.sum())
            for i in range(kp):
                st.accepted_per_position[i] += int((kept > i).sum())
            st.draft_s += t1 - t0
            st.verify_s += t2 - t1
        else:
            st.other_s += t2 - t0
        if (chooser := self._timing()) is not None:
            # The mean over active rows, not the least: with 20+ rows some row nearly always
            # rejects at once, and the least would make every k > 0 look like one step a pass.
            chooser.record(k, time.perf_counter() - t0, float(gained[active].float().mean()))

    def _finished(self) -> dict[int, torch.Tensor]:
        """Series whose rows all reached their goal leave: their values out, their rows and caches dropped."""
        rows = self._live()
        done_row = rows.n >= rows.goal
        if not bool(done_row.any()):
            return {}
        ids, inverse = rows.series.unique(return_inverse=True)
        going = torch.bincount(inverse, weights=(~done_row).float(), minlength=len(ids))  # [series] rows still going
        left = (going == 0) & (ids != _LEFT)  # [series]: finished now (not reported already)
        if not bool(left.any()):
            return {}
        leaving = left[inverse]  # [R]
        idx = leaving.nonzero().squeeze(1)
        out = {}
        for sid in ids[left].tolist():
            mine = idx[rows.series[idx] == sid]
            goal = int(rows.goal[mine[0]])
            out[sid] = self.model.values(self.state, rows.committed[mine, :goal], mine).reshape(len(mine), -1)
        if self.keep_finished and not bool(done_row.all()):
            rows.series[leaving] = _LEFT  # they ride along, inactive, until compact()
        else:
            self._keep(((~leaving) & (rows.series != _LEFT)).nonzero().squeeze(1))
        return out

    def compact(self) -> None:
        """Drop the rows of series that finished (kept by ``keep_finished``): rows from the end take their
        places (``_keep``)."""
        if self.rows is not None:
            gone = self.rows.series == _LEFT
            if bool(gone.any()):
                self._keep((~gone).nonzero().squeeze(1))

    @property
    def finished_rows(self) -> int:
        """Rows of finished series still riding along (``keep_finished``), awaiting ``compact``."""
        return 0 if self.rows is None else int((self.rows.series == _LEFT).sum())

    def drop(self, ids: list[int]) -> None:
        """Series leave before their goal (their forecast is no longer wanted): their rows and caches are dropped
        between iterations, and nothing of them is returned. Ids not decoding are ignored."""
        if self.rows is None or not ids:
            return
        gone = torch.isin(self.rows.series, torch.tensor(ids, device=self.rows.series.device))  # [R]
        if bool(gone.any()):
            self._keep((~gone).nonzero().squeeze(1))

    def _keep(self, keep: torch.Tensor) -> None:
        """Only rows ``keep`` [R'] (ascending) go on decoding (none: the decoder is idle). The rows of series that
        stay keep their places and rows from the end fill the holes (``fill_order``: the caches move only those
        rows), unless that would split a series' rows."""
        if len(keep) == 0:
            self.rows, self.state = None, None
            stop = getattr(self.proposer, "stop", None)  # optional for proposers written before it
            if stop is not None:
                stop()
            return
        order = fill_order(keep, len(self._live().series))
        if order is not keep and _runs(self._live().series[order]) == _runs(self._live().series[keep]):
            keep = order
        self.rows, self.state = self._live().select(keep), self.model.select(self.state, keep)
        if self.proposer is not None:
            self.proposer.select(keep)


_LEFT = -1  # the series id of rows whose series finished but which stay until ``Decoder.compact``


@dataclasses.dataclass
class _Rows:
    """The engine's bookkeeping of the rows decoding, each field [R, ...].

    committed [R, C, *shape] steps so far; n [R] how many; goal [R] how many wanted;
    pending [R, *shape] the input at position n (the start input, then the last step);
    series [R] the id of each row's series; group [R] its sampling setting; keys: the hashes of the rows' random
    streams at window steps 0..C-1 (``RowStreams.keys``, SAMPLE / ACCEPT / RESIDUAL), made once per row, from
    which a step's numbers are mixed; uniforms: column 0 of each, the number a categorical step reads.
    """

    committed: torch.Tensor
    n: torch.Tensor
    goal: torch.Tensor
    pending: torch.Tensor
    series: torch.Tensor
    group: torch.Tensor
    uniforms: dict[int, torch.Tensor]
    keys: dict[int, torch.Tensor]
    together: int | None = None  # the one position of every row while all stand together, none finished, one setting
    together_goal: int | None = None

    @classmethod
    def new(
        cls,
        start: torch.Tensor,
        streams: RowStreams,
        series: torch.Tensor,
        goal: torch.Tensor,
        first: torch.Tensor,
        group: int,
        capacity: int,
        k_max: int,
    ) -> _Rows:
        """Rows of series joining: series, goal, first [R] long (each row's series id, steps, first horizon step)."""
        r, device = len(series), start.device
        streams = RowStreams(streams.base.to(device))  # window step w of a row is its horizon step first + w
        window = torch.arange(capacity, device=device).expand(r, capacity)
        kinds = (SAMPLE, ACCEPT, RESIDUAL) if k_max > 0 else (SAMPLE,)
        keys = {kind: streams.keys(first[:, None] + window, kind) for kind in kinds}  # [R, C] int64 each
        uniforms = {kind: column_block(k, 1)[..., 0] for kind, k in keys.items()}  # [R, C] float32: column 0
        one_goal = bool((goal == goal[0]).all())  # rows stand together only while they go to one goal
        return cls(
            committed=start.new_zeros((r, capacity, *start.shape[1:])),
            n=torch.zeros(r, dtype=torch.long, device=device),
            goal=goal,
            pending=start,
            series=series,
            group=torch.full((r,), group, dtype=torch.long, device=device),
            uniforms=uniforms,
            keys=keys,
            together=0 if one_goal else None,
            together_goal=int(goal[0]) if one_goal else None,
        )

    def u(self, kind: int) -> torch.Tensor:
        return self.uniforms[kind]

    def commit(self, new: torch.Tensor, accepted: torch.Tensor, active: torch.Tensor, lockstep: bool) -> None:
        """new [R, m, *shape]: proposed steps then the verifier's; row r keeps new[r, :accepted[r] + 1] if active."""
        self.together = None  # rows may stand apart from here on
        new = new.to(self.committed.device)
        if lockstep and new.shape[1] == 1:  # every row at one position, one step each: plain decoding's path
            t = int(self.n[0])
            self.committed[:, t] = new[:, 0]
            self.pending = new[:, 0]
            self.n += 1
            return
        m = new.shape[1]
        cap = self.committed.shape[1]
        offsets = torch.arange(m, device=new.device)
        write = active[:, None] & (offsets[None, :] <= accepted[:, None])  # [R, m]
        where = (self.n[:, None] + offsets).clamp(max=cap - 1)  # [R, m]
        extra = (1,) * (new.dim() - 2)
        where_x = where.view(*where.shape, *extra).expand_as(new)
        current = self.committed.gather(1, where_x)
        self.committed.scatter_(1, where_x, torch.where(write.view(*write.shape, *extra), new, current))
        last = new.gather(1, accepted.view(-1, 1, *extra).expand(-1, 1, *new.shape[2:])).squeeze(1)
        self.pending = torch.where(active.view(-1, *extra), last, self.pending)
        self.n = self.n + torch.where(active, accepted + 1, 0)

    def select(self, keep: torch.Tensor) -> _Rows:
        return _Rows(
            self.committed[keep],
            self.n[keep],
            self.goal[keep],
            self.pending[keep],
            self.series[keep],
            self.group[keep],
            {kind: u[keep] for kind, u in self.uniforms.items()},
            {kind: k[keep] for kind, k in self.keys.items()},
            self.together,
            self.together_goal,
        )

    def merge(self, other: _Rows) -> _Rows:
        cap = max(self.committed.shape[1], other.committed.shape[1])
        return _Rows(
            torch.cat([pad_right(self.committed, cap, 1), pad_right(other.committed, cap, 1)]),
            torch.cat([self.n, other.n]),
            torch.cat([self.goal, other.goal]),
            torch.cat([self.pending, other.pending]),
            torch.cat([self.series, other.series]),
            torch.cat([self.group, other.group]),
            {
                kind: torch.cat([pad_right(u, cap, 1), pad_right(other.uniforms[kind], cap, 1)])
                for kind, u in self.uniforms.items()
                if kind in other.uniforms
            },
            {
                kind: torch.cat([pad_right(k, cap, 1), pad_right(other.keys[kind], cap, 1)])
                for kind, k in self.keys.items()
                if kind in other.keys
            },
            # joined rows stand together only when they start where the others stand, for as long, in one setting
            self.together
            if (
                self.together == other.together
                and self.together_goal == other.together_goal
                and bool((self.group == other.group[0]).all())
                and bool((other.group == other.group[0]).all())
            )
            else None,
            self.together_goal,
        )


class _Rand:
    """The ``Rand`` of a head at the rows' positions: column 0 of count 1 is the precomputed SAMPLE number
    (what a categorical draw reads); more numbers per step come from the streams."""

    def __init__(
        self,
        rows: _Rows,
        window: torch.Tensor | None,
        kind: int,
        index: torch.Tensor | None = None,
        at: int | None = None,
    ) -> None:
        self.rows_, self.window, self.kind, self.index, self.at = (
            rows,
            window,
            kind,
            index,
            at,
        )  # at: every row's window step

    def rows(self, index: torch.Tensor) -> _Rand:
        assert self.window is not None  # rows of a window, not of one position
        return _Rand(self.rows_, self.window[index], self.kind, index if self.index is None else self.index[index])

    def __call__(self, count: int, offset: int = 0) -> torch.Tensor:
        rows = self.rows_
        if self.at is not None:
            if count == 1 and offset == 0:
                return rows.u(self.kind)[:, self.at : self.at + 1, None]  # [R, 1, 1], a view
            return column_block(rows.keys[self.kind][:, self.at : self.at + 1], count, offset)  # [R, 1, count]
        assert self.window is not None  # no common position: each row reads its window
        pick = slice(None) if self.index is None else self.index
        if count == 1 and offset == 0:
            return rows.u(self.kind)[pick].gather(1, self.window)[..., None]  # [R, n, 1]
        return column_block(rows.keys[self.kind][pick].gather(1, self.window), count, offset)  # [R, n, count]


def _head_rows(head, index: torch.Tensor):
    """The head of rows ``index`` only: every tensor field indexed on its first dimension."""
    fields = {f.name: getattr(head, f.name) for f in dataclasses.fields(head)}
    return type(head)(
        **{name: value[index] if isinstance(value, torch.Tensor) else value for name, value in fields.items()}
    )


def _runs(series: torch.Tensor) -> int:
    """series [R] -> how many runs of equal ids it has."""
    return 1 + int((series[1:] != series[:-1]).sum()) if len(series) else 0


def _beside_active(n: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """n [R], active [R] (one at least) -> positions [R]: an active row's own, an inactive row the position of the
    nearest active row before it (after it, for leading rows). Rows that ride along then split no run of rows
    standing at one position, whose self-attention the model computes over that run's positions only."""
    index = torch.arange(len(n), device=n.device)
    before = torch.where(active, index, -1).cummax(0).values  # [R] the last active row at or before each
    first = int(active.nonzero()[0])
    return n[torch.where(before >= 0, before, first)]


def _per_series(value: int | Sequence[int], b: int, name: str, low: int) -> list[int]:
    """One int for every series, or one per series -> [B] ints, each checked."""
    values = list(value) if isinstance(value, (Sequence, np.ndarray)) else [value] * b
    if len(values) != b:
        raise ValueError(f"`{name}` has {len(values)} entries for {b} series; pass one int or one per series")
    return [check_int(v, name, low=low, must=f"an integer >= {low}") for v in values]


def _warping(sampling: SamplingConfig) -> tuple:
    """What decides how a step is drawn: rows that agree on it may decode (and speculate) together."""
    return (sampling.temperature, sampling.top_k, sampling.top_p)
