"""Proposers for speculative decoding, one file per kind of draft."""

from leapcast.engine.proposers.base import Proposal, ProposalInput, Proposer
from leapcast.engine.proposers.draft_model import DraftModelProposer
from leapcast.engine.proposers.early_exit import EarlyExitProposer
from leapcast.engine.proposers.registry import ProposerName, make_proposer, parse
from leapcast.engine.proposers.seasonal import SeasonalProposer

__all__ = [
    "DraftModelProposer",
    "EarlyExitProposer",
    "Proposal",
    "ProposalInput",
    "Proposer",
    "ProposerName",
    "SeasonalProposer",
    "make_proposer",
    "parse",
]
