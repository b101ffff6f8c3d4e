"""Validation of metric inputs: predictions as strings, references as one or several strings per item."""

from __future__ import annotations

from collections.abc import Sequence


def has_words(text: str) -> bool:
    """True when `text` holds at least one letter or digit (any script)."""
    return any(character.isalnum() for character in text)


def as_reference_lists(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]
) -> tuple[list[str], list[list[str]]]:
    """Check the inputs and return ``(predictions, references)`` with a list of references per item.

    `references` holds one string per prediction, or a non-empty list of strings per prediction.
    """
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be sequences of strings, not a single str")
    predictions = list(predictions)
    references = list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} references; pass one reference "
            "(or one list of references) per prediction"
        )
    for index, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise TypeError(f"prediction {index} is a {type(prediction).__name__}, expected str: {prediction!r:.80}")
    reference_lists: list[list[str]] = []
    for index, item in enumerate(references):
        refs = [item] if isinstance(item, str) else list(item)
        if not refs:
            raise ValueError(f"item {index} has no reference; every prediction needs at least one reference")
        for ref in refs:
            if not isinstance(ref, str):
                raise TypeError(f"a reference of item {index} is a {type(ref).__name__}, expected str: {ref!r:.80}")
        reference_lists.append(refs)
    return predictions, reference_lists
