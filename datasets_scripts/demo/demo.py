"""`demo`: real chest X-rays with their radiographic findings, shipped inside hf-rrg (see README.md beside this
file).

A `datasets.GeneratorBasedBuilder` over `data/metadata.jsonl` + `data/images/*.jpg`, which
`make_demo.py` builds from the COVID-19 Image Data Collection (Cohen et al.). Load it with
`hf_rrg.data.load_builder("demo")`; with no `data_dir` the builder reads the `data/` folder next to this
script, wherever the script lives (a source checkout or an installed wheel). `data/` is also an ImageFolder
(`file_name` in metadata.jsonl): `datasets.load_dataset("imagefolder", data_dir=...)` reads it without hf-rrg.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from hf_rrg.text_files import jsonl_records

_DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"
_SPLITS = {
    "train": datasets.Split.TRAIN,
    "validation": datasets.Split.VALIDATION,
    "test": datasets.Split.TEST,
}
_REQUIRED_KEYS = (
    "id", "file_name", "split", "report", "history", "clinical_notes", "finding", "view", "patient_id", "license",
    "source_url",
)  # fmt: skip

_DESCRIPTION = (
    "Real chest X-rays (downscaled to a 256 px shorter side) with their radiographic findings, curated from "
    "the clinical notes published with them in the COVID-19 Image Data Collection (Cohen et al., MELBA 2020); "
    "the history and the full notes in their own columns. For demos and tests only: not for clinical use, "
    "not a benchmark."
)
_CITATION = """@article{cohen2020covidProspective,
  title   = {COVID-19 Image Data Collection: Prospective Predictions Are the Future},
  author  = {Joseph Paul Cohen and Paul Morrison and Lan Dao and Karsten Roth and
             Tim Q Duong and Marzyeh Ghassemi},
  journal = {Machine Learning for Biomedical Imaging},
  year    = {2020}
}"""
_LICENSE = (
    "Mixed per image (CC BY, CC BY 4.0, CC BY-SA, CC BY-NC-SA, CC BY-NC-SA 4.0; see README.md); "
    "the set as a whole: non-commercial use only, derivatives shared alike, attribute every source."
)


def read_metadata(data_dir: Path) -> list[dict[str, Any]]:
    """The records of `<data_dir>/metadata.jsonl`; errors name the file, the line and what is wrong."""
    path = data_dir / "metadata.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: data_dir must be the demo `data/` folder (metadata.jsonl + images/); "
            f"rebuild it with datasets_scripts/demo/make_demo.py or leave data_dir unset."
        )
    records = []
    for number, record in jsonl_records(path):
        missing = [k for k in _REQUIRED_KEYS if k not in record]
        if missing:
            raise ValueError(f"{path} line {number} lacks key(s) {missing}; rebuild it with make_demo.py.")
        if record["split"] not in _SPLITS:
            raise ValueError(f"{path} line {number} has split {record['split']!r}; expected one of {sorted(_SPLITS)}.")
        records.append(record)
    return records


class Demo(datasets.GeneratorBasedBuilder):
    """The embedded demo set: one chest X-ray per example, its radiographic findings as `report`."""

    VERSION = datasets.Version("2.0.0")

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            license=_LICENSE,
            homepage="https://github.com/ieee8023/covid-chestxray-dataset",
            features=datasets.Features(
                {
                    "id": datasets.Value("string"),
                    "images": datasets.List(datasets.Image()),
                    "report": datasets.Value("string"),
                    "history": datasets.Value("string"),
                    "clinical_notes": datasets.Value("string"),
                    "finding": datasets.Value("string"),
                    "view_positions": datasets.List(datasets.Value("string")),
                    "patient_id": datasets.Value("string"),
                    "license": datasets.Value("string"),
                    "source_url": datasets.Value("string"),
                }
            ),
        )

    def _data_dir(self) -> Path:
        data_dir = Path(self.config.data_dir).expanduser() if self.config.data_dir else _DEFAULT_DATA_DIR
        if not data_dir.is_dir():
            raise FileNotFoundError(
                f"Demo data folder {data_dir} does not exist; pass data_dir= the folder holding "
                f"metadata.jsonl and images/, or reinstall hf-rrg (the wheel ships it next to demo.py)."
            )
        return data_dir

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        data_dir = self._data_dir()
        records = read_metadata(data_dir)
        if not records:
            raise ValueError(
                f"{data_dir / 'metadata.jsonl'} holds no examples; rebuild it with make_demo.py."
            )
        missing = [r["file_name"] for r in records if not (data_dir / r["file_name"]).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image(s) listed in {data_dir / 'metadata.jsonl'} are missing "
                f"from {data_dir}, e.g. {missing[:3]}; rebuild the demo data with make_demo.py."
            )
        by_split = {name: [r for r in records if r["split"] == name] for name in _SPLITS}
        # A split with no example (possible with a trimmed data_dir) is left out: `datasets` cannot load it.
        return [
            datasets.SplitGenerator(
                name=_SPLITS[name], gen_kwargs={"data_dir": str(data_dir), "records": rows}
            )
            for name, rows in by_split.items()
            if rows
        ]

    def _generate_examples(
        self, data_dir: str, records: list[dict[str, Any]]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        root = Path(data_dir)
        for record in records:
            image_path = root / record["file_name"]
            yield (
                record["id"],
                {
                    "id": record["id"],
                    # Bytes only: the prepared Arrow files then do not depend on the package folder
                    # (a path that exists would be stored instead of the bytes).
                    "images": [{"path": None, "bytes": image_path.read_bytes()}],
                    "report": record["report"],
                    "history": record["history"],
                    "clinical_notes": record["clinical_notes"],
                    "finding": record["finding"],
                    "view_positions": [record["view"] or ""],
                    "patient_id": record["patient_id"],
                    "license": record["license"],
                    "source_url": record["source_url"],
                },
            )
