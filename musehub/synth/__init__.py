"""Deterministic synthetic muse repositories for load tests and end-to-end checks."""

from musehub.synth.history import generate_repo
from musehub.synth.params import GABRIEL_MUSE, PRESETS, SynthParams
from musehub.synth.push import SynthPushReport, push_synth
from musehub.synth.repo import SynthRepo

__all__ = [
    "GABRIEL_MUSE",
    "PRESETS",
    "SynthParams",
    "SynthPushReport",
    "SynthRepo",
    "generate_repo",
    "push_synth",
]
