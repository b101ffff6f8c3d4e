"""ITHN (Voutharoja, Wang, Zhou, ECAI 2023): hard-negative mining (`mining`) and the training recipe (`recipe`:
`labels` -> `prototypes` (XProNet backbones) -> `mine` -> `train`). The model is `hf_rrg.modeling.modeling_ithn`.

Names are imported on first use, so that `hf-rrg --help` (which registers `commands`) does not load torch.
"""

from ..modeling.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "mining": (
            "NeighbourFile",
            "embed_reports",
            "mine_hard_negatives",
            "nearest_neighbours",
            "read_neighbour_file",
        ),
    },
)
