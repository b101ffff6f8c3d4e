"""`RRGTokenizer`: the word-level report tokenizer every hf-rrg model saves with its weights.

A real `PreTrainedTokenizerFast` (a `tokenizers` WordLevel model, saved as `tokenizer.json` +
`tokenizer_config.json`, loadable with `AutoTokenizer`). Text first goes through a named cleaning preset (see
`report_cleaning.py`; the preset and its version are stored in the tokenizer config), then is split on whitespace.
The vocabulary is built once from a training corpus (`RRGTokenizer.from_reports`) and travels with the model, so a
checkpoint never depends on the annotation file that built it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from .report_cleaning import clean_report, get_cleaner

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}


def _word_level_backend(vocab: dict[str, int], unk_token: str) -> Tokenizer:
    """A `tokenizers` WordLevel model that splits on whitespace (cleaning happens before, in Python)."""
    backend = Tokenizer(models.WordLevel(vocab, unk_token=str(unk_token)))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return backend


class RRGTokenizer(PreTrainedTokenizerFast):
    """Word-level report tokenizer with a cleaning preset.

    Encoding cleans each report with the preset `cleaner`, splits it on whitespace and maps words to ids
    (out-of-vocabulary words to `<unk>`); with `add_special_tokens` (default) the ids are `<bos> ... <eos>`.
    Decoding with `skip_special_tokens=True` stops at the first `<eos>`, drops `<pad>`/`<bos>` and keeps `<unk>`
    (as R2Gen's decoder does), returning the cleaned report: tokens joined by single spaces.

    Args:
        vocab: token -> id (build one with `from_reports`; `from_pretrained` reads it from `tokenizer.json`).
        cleaner: name of the cleaning preset (`r2gen_iu_xray`, `r2gen_mimic_cxr`, `basic`, `chinese_char`).
        cleaner_version: the preset version the vocabulary was built with; loading fails clearly when this
            hf-rrg implements a different version (the tokens, hence the model's inputs, would differ).
        min_count: the minimum corpus count the vocabulary was built with (kept for the record).
        max_words: the cap on the number of words it was built with, if any (kept for the record).
    """

    vocab_files_names = {"tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab: dict[str, int] | None = None,
        cleaner: str = "basic",
        cleaner_version: int | None = None,
        min_count: int | None = None,
        max_words: int | None = None,
        add_bos_token: bool = True,
        add_eos_token: bool = True,
        clean_up_tokenization_spaces: bool = False,
        **kwargs,
    ) -> None:
        preset = get_cleaner(cleaner)
        if cleaner_version is not None and cleaner_version != preset.version:
            raise ValueError(
                f"This tokenizer was built with report cleaner {cleaner!r} version {cleaner_version}, but this "
                f"hf-rrg implements version {preset.version}; its tokens would differ from the ones the model was "
                "trained on. Install the hf-rrg release the checkpoint was made with."
            )
        for name, token in SPECIAL_TOKENS.items():
            kwargs.setdefault(name, token)
        if vocab is not None and kwargs.get("tokenizer_object") is None:
            # transformers 5 hands a custom-__init__ tokenizer the vocabulary of its tokenizer.json.
            kwargs["tokenizer_object"] = _word_level_backend(vocab, kwargs["unk_token"])
        self.cleaner = cleaner
        self.cleaner_version = preset.version
        self.min_count = min_count
        self.max_words = max_words
        super().__init__(
            cleaner=cleaner,
            cleaner_version=preset.version,
            min_count=min_count,
            max_words=max_words,
            add_bos_token=add_bos_token,
            add_eos_token=add_eos_token,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            **kwargs,
        )

    @classmethod
    def from_reports(
        cls,
        reports: Iterable[str],
        cleaner: str = "basic",
        min_count: int = 3,
        max_words: int | None = None,
        **kwargs,
    ) -> RRGTokenizer:
        """Build the vocabulary from training reports: every cleaned token seen at least `min_count` times
        (3 for IU X-Ray, 10 for MIMIC-CXR by convention), sorted, after the 4 special tokens (ids 0-3).
        `max_words` keeps only the most frequent words (ties broken alphabetically; CoAtt: the top 1,000)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_words is not None and max_words < 1:
            raise ValueError(f"max_words must be >= 1 or None, got {max_words}")
        counts: Counter[str] = Counter()
        n_reports = 0
        for report in reports:
            counts.update(clean_report(report, cleaner).split())
            n_reports += 1
        if n_reports == 0:
            raise ValueError("Cannot build a vocabulary from an empty list of reports.")
        specials = list(SPECIAL_TOKENS.values())
        kept = [(word, count) for word, count in counts.items() if count >= min_count and word not in specials]
        if max_words is not None:
            kept = sorted(kept, key=lambda item: (-item[1], item[0]))[:max_words]
        words = sorted(word for word, _ in kept)
        vocab = {token: index for index, token in enumerate(specials + words)}
        return cls(vocab=vocab, cleaner=cleaner, min_count=min_count, max_words=max_words, **kwargs)

    def clean(self, text: str) -> str:
        """The report as this tokenizer sees it: cleaned by its preset, tokens joined by single spaces."""
        return clean_report(text, self.cleaner)

    def normalize_report(self, text: str, max_tokens: int | None = None) -> str:
        """Cleaned report with out-of-vocabulary words shown as `<unk>`, cut to `max_tokens` tokens: the string
        R2Gen-family code scores (it decodes the token ids of the reference)."""
        vocab = self.get_vocab()
        tokens = [token if token in vocab else self.unk_token for token in self.clean(text).split()]
        return " ".join(tokens[:max_tokens] if max_tokens is not None else tokens)

    def _encode_plus(self, text, text_pair=None, *args, is_split_into_words: bool = False, **kwargs):
        if not is_split_into_words:
            text = self._clean_input(text)
            text_pair = self._clean_input(text_pair)
        return super()._encode_plus(text, text_pair, *args, is_split_into_words=is_split_into_words, **kwargs)

    def _clean_input(self, text):
        if text is None or isinstance(text, str):
            return None if text is None else self.clean(text)
        return [self.clean(item) for item in text]

    def _decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces=None, **kwargs):
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        if skip_special_tokens:
            token_ids = [int(i) for i in token_ids]
            if self.eos_token_id in token_ids:
                token_ids = token_ids[: token_ids.index(self.eos_token_id)]
            dropped = {self.pad_token_id, self.bos_token_id, self.eos_token_id}
            token_ids = [i for i in token_ids if i not in dropped]
        return super()._decode(token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False, **kwargs)
