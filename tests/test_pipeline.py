"""The `radiology-report-generation` pipeline: inputs of every kind, studies of several views, batching,
`generate_kwargs`, in-process registration and the exported `custom_pipelines` entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_hub_fixtures import build_model_and_processor, make_run_dir, misc_images, real_reports

from hf_rrg.hub import export_model, register_pipeline
from hf_rrg.modeling.pipeline_rrg import PIPELINE_TASK, RadiologyReportGenerationPipeline

TASK = "radiology-report-generation"


@pytest.fixture(scope="module")
def model_and_processor(shared_data: Path):
    return build_model_and_processor("r2gencmn", real_reports(shared_data), seed=1)


@pytest.fixture(scope="module")
def pipe(model_and_processor):
    from transformers import pipeline

    register_pipeline()
    model, processor = model_and_processor
    return pipeline(TASK, model=model, processor=processor, device="cpu")


@pytest.fixture(scope="module")
def images(shared_data: Path) -> list[Path]:
    return misc_images(shared_data)


def _direct(model, processor, studies, **generate_kwargs) -> list[str]:
    """What the pipeline must return: processor -> model.generate -> batch_decode, for a batch of studies."""
    inputs = processor(images=studies)
    with torch.no_grad():
        ids = model.generate(**inputs, **generate_kwargs)
    return processor.batch_decode(ids, skip_special_tokens=True)


def test_registered_in_process(pipe):
    from transformers.pipelines import PIPELINE_REGISTRY

    assert PIPELINE_TASK == TASK
    assert isinstance(pipe, RadiologyReportGenerationPipeline)
    assert PIPELINE_REGISTRY.supported_tasks[TASK]["impl"] is RadiologyReportGenerationPipeline
    register_pipeline()  # idempotent
    assert PIPELINE_REGISTRY.supported_tasks[TASK]["impl"] is RadiologyReportGenerationPipeline


def test_every_input_kind_gives_the_model_report(pipe, model_and_processor, images):
    model, processor = model_and_processor
    png, jpeg, _, dicom, dicom2 = images
    expected = _direct(model, processor, [[png], [jpeg], [dicom], [dicom2]])
    assert all(expected)
    assert pipe(str(png)) == [{"generated_text": expected[0]}]
    assert pipe(png) == [{"generated_text": expected[0]}]  # a Path
    assert pipe(Image.open(jpeg)) == [{"generated_text": expected[1]}]
    assert pipe(str(dicom)) == [{"generated_text": expected[2]}]
    assert pipe(dicom2.read_bytes()) == [{"generated_text": expected[3]}]
    array = np.asarray(Image.open(png).convert("L"))
    assert pipe(array) == [{"generated_text": expected[0]}]


def test_multi_view_studies_and_batches(pipe, model_and_processor, images):
    model, processor = model_and_processor
    png, jpeg, png2, dicom, _ = images
    studies = [[png, dicom], [jpeg], [png2, jpeg]]
    expected = _direct(model, processor, studies)
    assert pipe((png, dicom)) == [{"generated_text": expected[0]}]
    assert pipe({"images": [png, dicom]}) == [{"generated_text": expected[0]}]
    outputs = pipe(studies)  # a list of studies; an inner list is one study's views
    assert outputs == [[{"generated_text": report}] for report in expected]
    assert pipe(studies, batch_size=2) == outputs  # batched generation gives the same reports
    # the view padding must not change a one-view study's report
    single = _direct(model, processor, [[jpeg]])
    assert outputs[1] == [{"generated_text": single[0]}]


def test_generate_kwargs_pass_through(pipe, model_and_processor, images):
    model, processor = model_and_processor
    png = images[0]
    greedy = _direct(model, processor, [[png]], num_beams=1)
    assert pipe(png, generate_kwargs={"num_beams": 1}) == [{"generated_text": greedy[0]}]
    assert pipe(png, num_beams=1) == [{"generated_text": greedy[0]}]
    short = pipe(png, generate_kwargs={"max_new_tokens": 3, "num_beams": 1})[0]["generated_text"]
    assert short == " ".join(greedy[0].split()[:3])
    two = pipe(png, num_return_sequences=2)
    assert len(two) == 2 and two[0] == pipe(png)[0]  # the best beam first
    with pytest.raises(ValueError, match="given twice"):
        pipe(png, num_beams=2, generate_kwargs={"num_beams": 3})


def test_bad_inputs_say_what_is_wrong(pipe, images, tmp_path):
    png = images[0]
    with pytest.raises(ValueError, match="at most 2"):
        pipe((png, png, png))
    with pytest.raises(TypeError, match="unexpected argument"):
        pipe(png, beams=3)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="broken.png"):
        pipe(str(broken))
    with pytest.raises(ValueError, match="empty list"):
        pipe([])


def test_pipeline_from_an_exported_folder(tmp_path, shared_data, images):
    """`pipeline(model=DIR, trust_remote_code=True)` finds the task and class from `custom_pipelines` (the remote
    code path; the same without hf_rrg is tested in test_hub_export)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline

    run = make_run_dir(tmp_path / "run", "r2gen", real_reports(shared_data), seed=2)
    out = export_model(run, tmp_path / "export")
    remote = pipeline(model=str(out), trust_remote_code=True, device="cpu")
    assert remote.task == TASK
    assert type(remote).__module__.startswith("transformers_modules.")
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    expected = _direct(model, processor, [[images[3]], [images[1], images[2]]])
    assert remote([images[3], (images[1], images[2])]) == [[{"generated_text": report}] for report in expected]
