"""ASGK (Li, Wang, Chang, Liang 2020): tag sources, GloVe vectors, the textbook, the five-stage training recipe
(`tags` -> `glove` -> `textbook` -> `visual` -> `train`) and the Fig. 3 visualisation. The model itself lives in
`hf_rrg.modeling.modeling_asgk` (exported as Hub remote code)."""

from .glove import read_glove_text, train_glove, write_glove_text
from .tags import TagFile, labeler_tag_row, labeler_tags, match_tags, mesh_head_terms, mesh_tags, read_tag_file
from .textbook import TextbookCollator, TextbookSentences, iu_xray_textbook, read_textbook, split_textbook_sentences

__all__ = [
    "TagFile",
    "TextbookCollator",
    "TextbookSentences",
    "iu_xray_textbook",
    "labeler_tag_row",
    "labeler_tags",
    "match_tags",
    "mesh_head_terms",
    "mesh_tags",
    "read_glove_text",
    "read_tag_file",
    "read_textbook",
    "split_textbook_sentences",
    "train_glove",
    "write_glove_text",
]
