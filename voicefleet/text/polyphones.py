"""Polyphones read in context: g2pM's BiLSTM (PyPI ``g2pM``, Apache-2.0) run by our own numpy code.

g2pM (Park and Lee, Interspeech 2020) is a one-layer bidirectional LSTM (32 units a direction)
over character embeddings with a two-layer classifier, trained by its authors on the CPP
benchmark's train split (Chinese Wikipedia sentences). We load its published weights from the
installed package (2.1 MB, numpy only) and run it our way, about five times faster on one
thread than its own code: the input projections of both directions are one matrix product per
run, both directions then advance together in one block-diagonal product per step, all four
gates take one ``tanh`` (σ(x) = ½ tanh(x/2) + ½, the halving folded into the weights), every
step writes into preallocated arrays, and the classifier runs only where a reading is wanted,
choosing among that character's own readings. The model does not run at all for a run whose
polyphones pypinyin's phrases already read (below).

Where pypinyin reads a character as part of a phrase of two or more characters (了解, 着火,
为什么), the phrase wins: g2pM learned only CPP's annotated polyphones and is confidently wrong on
plain dictionary words (了解 as le5 jie3, 头发 as tou2 fa1). Everywhere else the model chooses.
Measured on the CPP *test* split (the dev split is only measured, never tuned on): pypinyin
87.9 %, the model alone 97.3 %, this combination 97.0 % (most of the gap is CPP labelling a
neutral tone as full: 姥姥, 弟弟, 肚子). The model knows CPP's Wikipedia sense of a character
best: on short everyday sentences (``benchmarks/everyday_polyphones*.tsv``) it reads a lone 为 as
wei2 (为你 should be wei4), everyday verbs in their written sense (教我 jiao4, 种了 zhong3) and never
gives readings CPP rarely labels (得 dei3, 着 zhao2, 背 bei1), so there rules over the neighbours
(``senses``: measure words, verbs, adjectives, function words) and our lexicon's fixes
(``pronunciation.DEFAULT``) carry the everyday readings.
"""

from __future__ import annotations

import importlib.util
import logging
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np

from voicefleet.text import senses
from voicefleet.text.lexicon import lexicon

log = logging.getLogger(__name__)
_BOS, _EOS, _UNK = "시", "끝", "<UNK>"  # g2pM's sentence-start, sentence-end and unknown tokens
# g2pM classes that are no syllable to speak: xx5 marks "no reading"; r5 is 儿 as erhua, which
# voicefleet.text.tones decides from the lexical er2.
_NOT_READINGS = {"xx5", "r5"}
_FILES = ("np_ckpt", "char2idx", "class2idx", "digest_cedict")  # in PolyphoneModel's argument order


class PolyphoneModel:
    """g2pM's weights (``state``: its numpy checkpoint) ready for our inference."""

    def __init__(self, state: dict[str, np.ndarray], char_ids: dict[str, int], classes: dict[str, int],
                 cedict: dict[str, list[str]]):
        self.units = state["lstm.weight_hh_l0"].shape[1]
        self.char_ids = char_ids
        self.bos, self.eos, self.unk = char_ids[_BOS], char_ids[_EOS], char_ids[_UNK]
        names = {index: _pypinyin_notation(name) for name, index in classes.items()}
        usable = {ch: [r for r in readings if r not in _NOT_READINGS] for ch, readings in cedict.items()}
        self.candidates = {ch: np.array([classes[r] for r in readings]) for ch, readings in usable.items()
                           if len(readings) > 1}
        self.names = {ch: [names[i] for i in ids] for ch, ids in self.candidates.items()}
        self.embedding = state["embedding.weight"].astype(np.float32, copy=False)
        self.input_w, self.input_b, self.recurrent = _packed_lstm(state, self.units)
        self.hidden_w, self.hidden_b = state["logit_layer.0.weight"].T * 0.5, state["logit_layer.0.bias"]
        self.out_w, self.out_b = state["logit_layer.2.weight"].T, state["logit_layer.2.bias"]

    def choose(self, text: str, where: list[int] | None = None) -> dict[int, str]:
        """Index → reading of each polyphone in ``text`` (or of those at ``where``), the likeliest
        among the character's own readings."""
        where = self.polyphones(text) if where is None else where
        if not where:
            return {}
        ids = [self.bos, *(self.char_ids.get(ch, self.unk) for ch in text), self.eos]
        states = self._states(np.array(ids))[np.array(where) + 1]
        logits = np.maximum(states @ self.hidden_w + self.hidden_b, 0) @ self.out_w + self.out_b
        out = {}
        for row, index in zip(logits, where, strict=True):
            out[index] = self.names[text[index]][int(np.argmax(row[self.candidates[text[index]]]))]
        return out

    def polyphones(self, text: str) -> list[int]:
        """Indexes of the characters in ``text`` that have more than one reading."""
        return [i for i, ch in enumerate(text) if ch in self.candidates]

    def _states(self, ids: np.ndarray) -> np.ndarray:
        """[len(ids), 2 units]: forward and backward hidden states at each position, doubled
        (``_packed_lstm`` halves what reads them)."""
        u, steps = self.units, len(ids)
        x = (self.embedding[ids] @ self.input_w + self.input_b).reshape(steps, 4, 2, u)
        x[:, :, 1] = x[::-1, :, 1].copy()  # the backward direction reads from the end
        x = x.reshape(steps, 8 * u)
        gates, plus1 = np.empty(8 * u, np.float32), np.empty(8 * u, np.float32)
        cell, scratch = np.zeros(2 * u, np.float32), np.empty(2 * u, np.float32)
        i, f, g, o = (slice(k * 2 * u, (k + 1) * 2 * u) for k in range(4))
        out = np.zeros((steps + 1, 2 * u), np.float32)  # row -1 stays zero: the state before the first step
        for t in range(steps):
            np.dot(out[t - 1], self.recurrent, out=gates)
            gates += x[t]
            np.tanh(gates, out=gates)
            np.add(gates, 1, out=plus1)  # 2σ for the i, f, o blocks
            cell *= plus1[f]
            np.multiply(plus1[i], gates[g], out=scratch)
            cell += scratch
            cell *= 0.5
            np.tanh(cell, out=scratch)
            np.multiply(plus1[o], scratch, out=out[t])
        out = out[:steps]
        out[:, u:] = out[::-1, u:].copy()  # backward states back in reading order
        return out


def _packed_lstm(state: dict[str, np.ndarray], u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input weights [embedding, 8u] and bias, and the block-diagonal recurrent matrix [2u, 8u],
    columns gate-major then direction (PyTorch's gate order: i, f, g, o). σ(x) = ½ tanh(x/2) + ½,
    so the i, f, o columns are halved and one tanh serves all four gates; the recurrent rows are
    halved again because ``_states`` keeps the hidden state doubled (2σ(o)·tanh(c))."""
    half = np.repeat(np.array([0.5, 0.5, 1.0, 0.5], np.float32), u)
    weights, biases, recurrent = [], [], np.zeros((2, u, 4, 2, u), np.float32)
    for d, suffix in enumerate(("", "_reverse")):
        weights.append((state[f"lstm.weight_ih_l0{suffix}"].T * half).reshape(-1, 4, u))
        biases.append(((state[f"lstm.bias_ih_l0{suffix}"] + state[f"lstm.bias_hh_l0{suffix}"]) * half).reshape(4, u))
        recurrent[d, :, :, d, :] = (state[f"lstm.weight_hh_l0{suffix}"].T * half * 0.5).reshape(u, 4, u)
    input_w, input_b = np.stack(weights, axis=2).reshape(-1, 8 * u), np.stack(biases, axis=1).reshape(8 * u)
    return input_w.astype(np.float32), input_b.astype(np.float32), recurrent.reshape(2 * u, 8 * u)


def _pypinyin_notation(name: str) -> str:
    """g2pM's ``lu:4``/``nu:e4`` as pypinyin writes them (``lv4``, ``nve4``); ``ju4`` stays."""
    return name.replace("u:", "v")


@lru_cache(maxsize=1)
def model() -> PolyphoneModel | None:
    """g2pM's weights from the installed package, or None (with a warning saying why) when the
    package or one of its files is missing or unreadable: then pypinyin reads polyphones alone."""
    spec = importlib.util.find_spec("g2pM")
    if spec is None or not spec.submodule_search_locations:
        log.warning("g2pM is not installed: polyphones are read without context (pypinyin's readings); "
                    "install voicefleet[edge] for the context model")
        return None
    folder = Path(spec.submodule_search_locations[0])
    try:
        return PolyphoneModel(*(_load(folder / f"{name}.pkl") for name in _FILES))
    except (OSError, pickle.UnpicklingError, EOFError, KeyError) as error:
        log.warning("g2pM's model files in %s cannot be read (%s): polyphones are read without context "
                    "(pypinyin's readings); reinstall g2pM==0.1.2.5", folder, error)
        return None


def _load(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)  # the installed package's own files, as trusted as its code


def readings(han: str) -> tuple[list[str | None], list[bool]]:
    """One TONE3 reading per character of a Han run: pypinyin's phrase readings (``lexicon``) where
    a phrase of two or more characters covers it, else the model's choice at a polyphone, else
    pypinyin's reading of the character alone; then the everyday senses its neighbours settle.
    Also where the lexicon's words start (``Lexicon.read``)."""
    chooser = model()
    out, phrased, starts = lexicon().read(han)
    if chooser is not None:
        free = [index for index in chooser.polyphones(han) if not phrased[index]]
        for index, reading in chooser.choose(han, free).items():  # the model runs only if one is free
            out[index] = reading
    senses.apply(han, out, phrased)
    return out, starts
