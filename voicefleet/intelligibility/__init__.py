"""Intelligibility: can an offline recogniser understand what an engine said?

``char_error_rate(reference, hypothesis)`` and ``normalise`` (score.py) are light;
``shared_recogniser().transcribe(pcm, sample_rate, lang)`` (recogniser.py) loads Whisper base on
first use and raises ``RecogniserUnavailable`` where the ``asr`` extra is not installed;
``heldout_sentences()`` are what it is measured on (sentences.py). A
control-plane and build-time tool: edge agents never import the recogniser.
"""

from voicefleet.intelligibility.recogniser import Recogniser, RecogniserUnavailable, shared_recogniser
from voicefleet.intelligibility.score import UNINTELLIGIBLE, char_error_rate, edit_distance, normalise, summary
from voicefleet.intelligibility.sentences import gate_sentences, heldout_sentences

__all__ = ["UNINTELLIGIBLE", "Recogniser", "RecogniserUnavailable", "char_error_rate", "edit_distance",
           "gate_sentences", "heldout_sentences", "normalise", "shared_recogniser", "summary"]
