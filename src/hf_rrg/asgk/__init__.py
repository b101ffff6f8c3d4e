"""ASGK (Li, Wang, Chang, Liang 2020): tag sources, GloVe vectors, the textbook, the five-stage training recipe
(`tags` -> `glove` -> `textbook` -> `visual` -> `train`) and the Fig. 3 visualisation. The model itself lives in
`hf_rrg.modeling.modeling_asgk` (exported as Hub remote code).

Names are imported on first use, so that `hf-rrg --help` (which registers `commands`) does not load torch.
"""

from ..modeling.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "glove": ("read_glove_text", "train_glove", "write_glove_text"),
        "tags": (
            "TagFile",
            "labeler_tag_row",
            "labeler_tags",
            "match_tags",
            "mesh_head_terms",
            "mesh_tags",
            "read_tag_file",
        ),
        "textbook": (
            "TextbookCollator",
            "TextbookSentences",
            "iu_xray_textbook",
            "read_textbook",
            "split_textbook_sentences",
        ),
    },
)
