"""CoAtt's data side (outside `hf_rrg.modeling`): the MLC tag vocabulary (§4.1) and the `tags` -> `train` recipe.
The model is `hf_rrg.modeling.modeling_coatt.CoAttForConditionalGeneration`.

Names are imported on first use, so that `hf-rrg --help` (which registers `commands`) does not load torch.
"""

from ..modeling.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "tags": (
            "TAG_FILE_FORMAT",
            "TAG_SOURCES",
            "TagLookup",
            "TagVocabulary",
            "build_tag_vocabulary",
            "example_tags",
        ),
    },
)
