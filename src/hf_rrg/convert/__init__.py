"""Official checkpoints (R2Gen, R2GenCMN, XProNet, ITHN) -> hf-rrg models: key maps per method family, the
official vocabulary rebuilt and permuted into hf-rrg's layout, strict tensor-only reading, the Hub folder writer.

`convert_checkpoint(method, checkpoint, annotation, out_dir, ...)` is `hf-rrg convert`; `convert(...)` returns the
model and processor without writing; `ours_to_official(model, key_map_for(model), vocabulary_map)` writes a model
back in the official layout (what the official code would load).
"""

from .checkpoint import OfficialCheckpoint, load_official_checkpoint
from .key_maps import KeyMap, key_map_for
from .state import official_to_ours, ours_to_official
from .vocabulary import NEVER_LOGIT, VocabularyMap, official_tokens, tokenizer_for
from .writer import Converted, convert, convert_checkpoint, read_train_reports

__all__ = [
    "NEVER_LOGIT",
    "Converted",
    "KeyMap",
    "OfficialCheckpoint",
    "VocabularyMap",
    "convert",
    "convert_checkpoint",
    "key_map_for",
    "load_official_checkpoint",
    "official_to_ours",
    "official_tokens",
    "ours_to_official",
    "read_train_reports",
    "tokenizer_for",
]
