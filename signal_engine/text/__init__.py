"""The text expert: headlines and report sections to a sentiment (bearish / bullish / neutral) with probabilities.

An offline small language model (all-MiniLM-L6-v2, int8 ONNX) turns each text into a sentence embedding
(:mod:`signal_engine.text.encoder`); a multinomial logistic-regression head trained on a labelled financial
corpus shipped with the project (:mod:`signal_engine.text.corpus`, :mod:`signal_engine.text.head`) turns the
embedding into class probabilities. :mod:`signal_engine.text.aggregate` turns scored documents into a
point-in-time score per symbol and bar, with "no news" as an explicit abstention.

The encoder needs the ``text`` extra (``pip install 'signal-engine[text]'``); nothing here is imported by the
serving path.
"""

LABELS: tuple[str, ...] = ("bearish", "bullish", "neutral")
"""The corpus's classes in the order of its integer labels (0, 1, 2) and of the probability columns."""
