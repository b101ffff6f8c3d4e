"""GloVe word vectors for ASGK's 300-d word embeddings (§3.2: "embedded from Glove vectors pretrained on our
datasets"; §4: the training reports + the textbook).

`train_glove` implements GloVe's weighted least-squares objective (Pennington, Socher, Manning 2014):

    J = Σ_{i,j: X_ij > 0} f(X_ij) (w_i · w~_j + b_i + b~_j - log X_ij)^2,   f(x) = min(1, (x / x_max)^α)

over the co-occurrence counts X_ij of word j within `window` words of word i, each pair weighted 1 / distance,
optimised with AdaGrad through the training engine (`glove_task`: one task like any other stage's); the
vectors are w + w~ (the paper's recommendation). `read_glove_text` reads vectors a
person supplies (the standard `word v1 v2 ...` text format) for the tokenizer's vocabulary.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from typing import Any

import torch
from torch import nn


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


class GloVeModel(nn.Module):
    """GloVe's parameters w, w~ (uniform in ±0.5/dim, seeded) and b, b~ (zeros); `forward(rows, cols, counts)`
    is J over those co-occurrence entries."""

    def __init__(self, vocab_size: int, dim: int, x_max: float = 100.0, alpha: float = 0.75, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        scale = 0.5 / dim
        self.w = nn.Parameter((torch.rand(vocab_size, dim, generator=generator) - 0.5) * 2 * scale)
        self.w_context = nn.Parameter((torch.rand(vocab_size, dim, generator=generator) - 0.5) * 2 * scale)
        self.b = nn.Parameter(torch.zeros(vocab_size))
        self.b_context = nn.Parameter(torch.zeros(vocab_size))
        self.x_max, self.alpha = x_max, alpha

    def forward(self, rows: torch.Tensor, cols: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        return glove_loss(self.w, self.w_context, self.b, self.b_context, rows, cols, counts, self.x_max, self.alpha)

    def vectors(self) -> torch.Tensor:
        """w + w~ (the paper's recommendation)."""
        return (self.w + self.w_context).detach().cpu()


def glove_task(
    sequences: Sequence[Sequence[int]], vocab_size: int, dim: int = 300, window: int = 10, epochs: int = 50,
    x_max: float = 100.0, alpha: float = 0.75, learning_rate: float = 0.05, batch_size: int = 4096,
    ignore: Sequence[int] = (), seed: int = 0, progress: bool = True, settings: Any = None,
) -> Any:  # fmt: skip
    """The engine task that trains GloVe (AdaGrad on shuffled batches of nonzero co-occurrences, the order of
    each epoch seeded by (seed, epoch)); `settings` defaults to the given epochs, seed and progress."""
    from torch.utils.data import DataLoader, TensorDataset

    from ..training.engine import LoopSettings, TrainingTask
    from ..training.run_setup import EpochPermutationSampler

    rows, cols, counts = cooccurrences(sequences, window, ignore)
    if int(torch.cat([rows, cols]).max()) >= vocab_size:
        raise ValueError(f"token ids reach {int(torch.cat([rows, cols]).max())} but vocab_size is {vocab_size}")
    entries = TensorDataset(rows, cols, counts)
    loader = DataLoader(entries, batch_size=batch_size, sampler=EpochPermutationSampler(len(entries), seed))
    return TrainingTask(
        name="glove",
        model=GloVeModel(vocab_size, dim, x_max, alpha, seed),
        train_loader=loader,
        optimizer=lambda model: torch.optim.Adagrad(model.parameters(), lr=learning_rate),
        settings=settings or LoopSettings(epochs=epochs, seed=seed, progress=progress),
        forward=lambda model, batch: model(*batch),
    )


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
    """Train GloVe on token-id sequences through the training engine (no run folder); returns (vectors
    (vocab_size, dim) = w + w~, the mean J per batch of each epoch). Words that never co-occur keep their small
    random initial vectors."""
    from ..training.engine import Engine
    from ..training.runtime import plain_accelerator

    task = glove_task(sequences, vocab_size, dim, window, epochs, x_max, alpha, learning_rate, batch_size, ignore,
                      seed, progress)  # fmt: skip
    run = Engine(plain_accelerator(), None, None).run(task)
    return run.unwrapped.vectors(), [record["train/loss"] for record in run.history]


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


__all__ = [
    "GloVeModel",
    "cooccurrences",
    "glove_loss",
    "glove_task",
    "glove_weights",
    "read_glove_text",
    "train_glove",
    "write_glove_text",
]
