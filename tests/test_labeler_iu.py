"""Agreement of the labeler with the manual MeSH tags of the 3,955 real IU X-Ray reports (regression floors)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "validate_labeler_iu.py"

# F1 measured when the labeler was written (docs/labeler.md), minus a margin: a drop below fails.
F1_FLOORS = {"No Finding": 0.85, "Cardiomegaly": 0.81, "Pleural Effusion": 0.89, "Pneumothorax": 0.82,
             "Atelectasis": 0.88, "Lung Opacity": 0.83}


@pytest.fixture(scope="module")
def iu_result(shared_data: Path) -> dict:
    tgz = shared_data / "iu_xray" / "NLMCXR_reports.tgz"
    if not tgz.is_file():
        pytest.skip(f"IU X-Ray archive {tgz} is absent")
    spec = importlib.util.spec_from_file_location("validate_labeler_iu", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.evaluate(tgz)


def test_reports_parsed(iu_result: dict) -> None:
    # 3,955 XML files; 28 have neither FINDINGS nor IMPRESSION text
    assert iu_result["n_reports"] == 3927
    assert iu_result["per_class"]["Cardiomegaly"]["support"] == 375


@pytest.mark.parametrize("observation", sorted(F1_FLOORS))
def test_f1_floor(iu_result: dict, observation: str) -> None:
    row = iu_result["per_class"][observation]
    assert row["f1"] >= F1_FLOORS[observation], row
    assert row["recall"] >= 0.9, row
