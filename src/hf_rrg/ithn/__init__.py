"""ITHN (Voutharoja, Wang, Zhou, ECAI 2023): hard-negative mining (`mining`) and the training recipe (`recipe`:
`labels` -> `prototypes` (XProNet backbones) -> `mine` -> `train`). The model is `hf_rrg.modeling.modeling_ithn`."""

from .mining import NeighbourFile, embed_reports, mine_hard_negatives, nearest_neighbours, read_neighbour_file

__all__ = ["NeighbourFile", "embed_reports", "mine_hard_negatives", "nearest_neighbours", "read_neighbour_file"]
