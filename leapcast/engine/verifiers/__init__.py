"""Verifiers: which proposed steps a target keeps, one module per kind of head.

``categorical``: exact speculative sampling over a vocabulary (Chronos-T5's bins).
Continuous heads (exact, over whole patches) and point heads (a stated
tolerance) get their own modules beside it.
"""

from leapcast.engine.verifiers.categorical import Verdict, verify

__all__ = ["Verdict", "verify"]
