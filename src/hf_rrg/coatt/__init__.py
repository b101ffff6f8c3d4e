"""CoAtt's data side (outside `hf_rrg.modeling`): the MLC tag vocabulary (§4.1) and the `tags` -> `train` recipe.
The model is `hf_rrg.modeling.modeling_coatt.CoAttForConditionalGeneration`."""

from .tags import TAG_FILE_FORMAT, TAG_SOURCES, TagLookup, TagVocabulary, build_tag_vocabulary, example_tags

__all__ = ["TAG_FILE_FORMAT", "TAG_SOURCES", "TagLookup", "TagVocabulary", "build_tag_vocabulary", "example_tags"]
