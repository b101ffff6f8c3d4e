"""Official checkpoints (R2Gen, R2GenCMN, XProNet, ITHN) -> hf-rrg models: key maps per method family, the
official vocabulary rebuilt and permuted into hf-rrg's layout, strict tensor-only reading, the Hub folder writer.

`convert_checkpoint(method, checkpoint, annotation, out_dir, ...)` is `hf-rrg convert`; `convert(...)` returns the
model and processor without writing; `ours_to_official(model, key_map_for(model), vocabulary_map)` writes a model
back in the official layout (what the official code would load).

Names are imported on first use, so that `hf-rrg --help` (which registers `commands`) does not load torch.
"""

from ..modeling.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "checkpoint": ("OfficialCheckpoint", "load_official_checkpoint"),
        "key_maps": ("KeyMap", "key_map_for"),
        "state": ("official_to_ours", "ours_to_official"),
        "vocabulary": ("NEVER_LOGIT", "VocabularyMap", "official_tokens", "tokenizer_for"),
        "writer": ("Converted", "convert", "convert_checkpoint", "read_train_reports"),
        "predict": ("predict_split",),
    },
)
