"""Corpora: the Corpus type, audio I/O, synthetic generators and importers of real formats."""

from sedsweep.data.corpus import Clip, Corpus, Event

__all__ = ["Clip", "Corpus", "Event"]
