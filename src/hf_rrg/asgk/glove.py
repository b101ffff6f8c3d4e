"""GloVe word vectors for ASGK's 300-d word embeddings (§3.2: "embedded from Glove vectors pretrained on our
datasets"; §4: the training reports + the textbook).

`train_glove` implements GloVe's weighted least-squares objective (Pennington, Socher, Manning 2014):

    J = Σ_{i,j: X_ij > 0} f(X_ij) (w_i · w~_j + b_i + b~_j - log X_ij)^2,   f(x) = min(1, (x / x_max)^α)

over the co-occurrence counts X_ij of word j within `window` words of word i, each pair weighted 1 / distance,
optimised with AdaGrad; the vectors are w + w~ (the paper's recommendation). `read_glove_text` reads vectors a
person supplies (the standard `word v1 v2 ...` text format) for the tokenizer's vocabulary.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm


def cooccurrences(
    sequences: Sequence[Sequence[int]], window: int = 10, ignore: Sequence[int] = ()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, cols, counts) of the symmetric co-occurrence matrix: each pair of tokens at distance d <= window
    adds 1 / d to X_ij and X_ji; ids in `ignore` (special tokens) are skipped."""
    skip = set(int(i) for i in ignore)
    counts: dict[tuple[int, int], float] = defaultdict(float)
    for sequence in sequences:
        tokens = [int(t) for t in sequence if int(t) not in skip]
        for position, word in enumerate(tokens):
            for distance in range(1, window + 1):
                if position + distance >= len(tokens):
                    break
                other = tokens[position + distance]
                counts[(word, other)] += 1.0 / distance
                counts[(other, word)] += 1.0 / distance
    if not counts:
        raise ValueError("no co-occurring word pair in the corpus: give GloVe more text")
    keys = list(counts)
    rows = torch.tensor([k[0] for k in keys], dtype=torch.long)
    cols = torch.tensor([k[1] for k in keys], dtype=torch.long)
    return rows, cols, torch.tensor([counts[k] for k in keys], dtype=torch.float32)


def glove_weights(counts: torch.Tensor, x_max: float = 100.0, alpha: float = 0.75) -> torch.Tensor:
    """f(X_ij) = min(1, (X_ij / x_max)^α)."""
    return (counts / x_max).pow(alpha).clamp(max=1.0)


def glove_loss(
    w: torch.Tensor, w_context: torch.Tensor, b: torch.Tensor, b_context: torch.Tensor,
    rows: torch.Tensor, cols: torch.Tensor, counts: torch.Tensor, x_max: float = 100.0, alpha: float = 0.75,
) -> torch.Tensor:  # fmt: skip
    """J over the given nonzero entries (summed)."""
    prediction = (w[rows] * w_context[cols]).sum(-1) + b[rows] + b_context[cols]
    return (glove_weights(counts, x_max, alpha) * (prediction - counts.log()) ** 2).sum()


def train_glove(
    sequences: Sequence[Sequence[int]],
    vocab_size: int,
    dim: int = 300,
    window: int = 10,
    epochs: int = 50,
    x_max: float = 100.0,
    alpha: float = 0.75,
    learning_rate: float = 0.05,
    batch_size: int = 4096,
    ignore: Sequence[int] = (),
    seed: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, list[float]]:
    """Train GloVe on token-id sequences; returns (vectors (vocab_size, dim) = w + w~, the loss J of each epoch).
    Words that never co-occur keep their small random initial vectors."""
    rows, cols, counts = cooccurrences(sequences, window, ignore)
    if int(torch.cat([rows, cols]).max()) >= vocab_size:
        raise ValueError(f"token ids reach {int(torch.cat([rows, cols]).max())} but vocab_size is {vocab_size}")
    generator = torch.Generator().manual_seed(seed)
    scale = 0.5 / dim
    params = [
        ((torch.rand(vocab_size, dim, generator=generator) - 0.5) * 2 * scale).requires_grad_(),
        ((torch.rand(vocab_size, dim, generator=generator) - 0.5) * 2 * scale).requires_grad_(),
        torch.zeros(vocab_size, requires_grad=True),
        torch.zeros(vocab_size, requires_grad=True),
    ]
    optimizer = torch.optim.Adagrad(params, lr=learning_rate)
    history = []
    for epoch in tqdm(range(epochs), desc="GloVe", disable=not progress):
        order = torch.randperm(len(counts), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = glove_loss(*params, rows[batch], cols[batch], counts[batch], x_max, alpha)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        history.append(total)
    return (params[0] + params[1]).detach(), history


def read_glove_text(
    path: str | Path, vocab: Mapping[str, int], dim: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, int]:
    """Vectors for `vocab` (token -> id) from a GloVe text file (`word v1 ... vD` per line). Returns (matrix
    (len(vocab), D), how many vocabulary words the file had); the others get N(0, 0.02) rows (seeded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GloVe file {path} does not exist")
    size = max(vocab.values()) + 1
    matrix: torch.Tensor | None = None
    found = set()
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if len(parts) < 2:
                continue
            word, values = parts[0], parts[1:]
            if matrix is None:
                dim = dim or len(values)
                if len(values) != dim:
                    raise ValueError(f"{path} has {len(values)}-d vectors; the model's d_model is {dim}")
                generator = torch.Generator().manual_seed(seed)
                matrix = torch.randn(size, dim, generator=generator) * 0.02
            if len(values) != matrix.size(1):
                raise ValueError(f"{path} line {number}: {len(values)} values, expected {matrix.size(1)}")
            if word in vocab:
                matrix[vocab[word]] = torch.tensor([float(v) for v in values])
                found.add(word)
    if matrix is None:
        raise ValueError(f"GloVe file {path} holds no vectors")
    return matrix, len(found)


def write_glove_text(path: str | Path, vectors: torch.Tensor, vocab: Mapping[str, int]) -> Path:
    """Write vectors of a vocabulary in the GloVe text format (what `read_glove_text` reads)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as handle:
        for word, index in sorted(vocab.items(), key=lambda kv: kv[1]):
            handle.write(word + " " + " ".join(f"{v:.6f}" for v in vectors[index].tolist()) + "\n")
    return path


__all__ = ["cooccurrences", "glove_loss", "glove_weights", "read_glove_text", "train_glove", "write_glove_text"]
