"""Mention and unmention phrases of the CheXpert labeler, read from the packaged phrase files.

The phrase files (`chexpert_data/phrases/{mention,unmention}/<observation>.txt`, MIT, from
stanfordmlgroup/chexpert-labeler @ 44ddeb36) hold raw lowercase patterns that are matched as plain
substrings, without word boundaries: prefixes such as ``atelecta`` or ``consolidat`` are intended, and
``_`` stands for a space (``_mediastinum`` does not match inside ``pneumomediastinum``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .observations import CARDIOMEGALY, ENLARGED_CARDIOMEDIASTINUM, NO_FINDING, OBSERVATIONS, phrase_file_stem

#: Folder of the packaged CheXpert phrase data.
DATA_DIR = Path(__file__).resolve().parent / "chexpert_data"

# Location words that turn a cardiac phrase into a position ("a line over the heart"), so the phrase is
# not a mention of the heart's size: {over the, overly the, in the} x {"", superior, left, right}
# (CheXpert's list) plus "overlying the" / "overlies the".
_POSITION_PREFIXES = ("over the", "overly the", "in the", "overlying the", "overlies the")
_POSITION_SIDES = ("", " superior", " left", " right")
# Cardiomegaly phrases that are not anatomy and so never follow a position prefix.
_NON_ANATOMICAL_CARDIAC = ("cardiomegaly", "cardiac enlargement")


def read_phrase_file(path: Path) -> list[str]:
    """Read one phrase file: one phrase a line, blank lines skipped, ``_`` turned into a space."""
    if not path.is_file():
        raise FileNotFoundError(f"CheXpert phrase file {path} is missing; reinstall hf-rrg or pass a complete phrase folder.")
    phrases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        phrase = line.strip().lower().replace("_", " ")
        if phrase:
            phrases.append(phrase)
    return phrases


def positional_unmentions(observation: str, mentions: list[str]) -> list[str]:
    """Unmentions made of a position prefix and a cardiac phrase ("over the heart", "in the left contour")."""
    prefixes = [p + s for p in _POSITION_PREFIXES for s in _POSITION_SIDES]
    if observation == CARDIOMEGALY:
        anatomy = [m.replace("the ", "") for m in mentions if m not in _NON_ANATOMICAL_CARDIAC]
    elif observation == ENLARGED_CARDIOMEDIASTINUM:
        anatomy = [m.strip() for m in mentions]
    else:
        return []
    return [f"{prefix} {phrase}" for prefix in prefixes for phrase in anatomy]


@dataclass(frozen=True)
class PhraseSet:
    """Mention phrases per observation (including ``No Finding``'s other-finding phrases) and unmentions."""

    mentions: dict[str, tuple[str, ...]]
    unmentions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_directory(cls, phrases_dir: Path | None = None) -> PhraseSet:
        """Load `<dir>/mention/*.txt` and `<dir>/unmention/*.txt` (default: the packaged CheXpert lists)."""
        root = Path(phrases_dir) if phrases_dir is not None else DATA_DIR / "phrases"
        if not (root / "mention").is_dir():
            raise FileNotFoundError(f"{root} has no 'mention' folder of phrase files (expected <dir>/mention/<observation>.txt).")
        mentions: dict[str, tuple[str, ...]] = {}
        unmentions: dict[str, tuple[str, ...]] = {}
        for observation in OBSERVATIONS:
            stem = phrase_file_stem(observation)
            mentions[observation] = tuple(read_phrase_file(root / "mention" / f"{stem}.txt"))
            unmention_file = root / "unmention" / f"{stem}.txt"
            extra = read_phrase_file(unmention_file) if unmention_file.is_file() else []
            extra += positional_unmentions(observation, list(mentions[observation]))
            if extra:
                unmentions[observation] = tuple(extra)
        return cls(mentions=mentions, unmentions=unmentions)

    def observation_phrases(self) -> list[tuple[str, str]]:
        """All ``(observation, phrase)`` pairs, the other-finding phrases under ``No Finding``."""
        return [(obs, phrase) for obs in OBSERVATIONS for phrase in self.mentions.get(obs, ())]


def find_all(text: str, phrase: str) -> list[tuple[int, int]]:
    """Every (start, end) where `phrase` occurs in `text`, overlapping occurrences included."""
    spans = []
    start = text.find(phrase)
    while start != -1:
        spans.append((start, start + len(phrase)))
        start = text.find(phrase, start + 1)
    return spans


def find_mentions(sentence: str, phrases: PhraseSet, candidates: list[tuple[str, str]] | None = None) -> list[tuple[str, int, int, str]]:
    """Mentions ``(observation, start, end, phrase)`` in a cleaned sentence, unmention overlaps removed.

    `candidates` restricts the search to pairs known to occur in the surrounding text (a speed-up).
    Results are ordered by start, then observation order.
    """
    found = []
    pairs = candidates if candidates is not None else phrases.observation_phrases()
    for observation, phrase in pairs:
        spans = find_all(sentence, phrase)
        if not spans:
            continue
        blockers = [span for u in phrases.unmentions.get(observation, ()) for span in find_all(sentence, u)]
        for start, end in spans:
            if any(start < u_end and end > u_start for u_start, u_end in blockers):
                continue
            found.append((observation, start, end, phrase))
    order = {obs: i for i, obs in enumerate(OBSERVATIONS)}
    found.sort(key=lambda m: (m[1], order[m[0]], m[2]))
    return found


__all__ = ["DATA_DIR", "NO_FINDING", "PhraseSet", "find_all", "find_mentions", "positional_unmentions", "read_phrase_file"]
