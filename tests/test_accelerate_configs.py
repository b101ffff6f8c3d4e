"""The shipped `accelerate launch` configs are valid Accelerate configs and say what they do: one machine and two
CPU processes (run by the distributed tests), all GPUs of a machine, two machines, FSDP2 (documented as not run
here); each names its launch command and what was tested in its header."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "training_scripts" / "accelerate"


def load(name: str):
    from accelerate.commands.config.config_args import load_config_from_file

    return load_config_from_file(str(CONFIGS / name))


def header(name: str) -> str:
    return "".join(line for line in (CONFIGS / name).read_text().splitlines(keepends=True) if line.startswith("#"))


def test_every_shipped_config_is_listed_here() -> None:
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == ["cpu_2proc.yaml", "fsdp.yaml", "multi_gpu.yaml",
                                                              "multi_node.yaml"]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "kind", "machines", "processes", "precision", "said"),
    [
        ("cpu_2proc.yaml", "MULTI_GPU", 1, 2, "no", ["gloo", "training.cpu: true", "Tested by"]),
        ("multi_gpu.yaml", "MULTI_GPU", 1, 4, "bf16", ["per process"]),
        ("multi_node.yaml", "MULTI_GPU", 2, 16, "bf16", ["machine_rank", "shared"]),
        ("fsdp.yaml", "FSDP", 1, 4, "bf16", ["NOT a tested way", "What was run", "What was not"]),
    ],
)
def test_config_fields_and_header(name, kind, machines, processes, precision, said) -> None:
    config = load(name)
    assert str(config.distributed_type).endswith(kind)
    assert (config.num_machines, config.num_processes, str(config.mixed_precision)) == (machines, processes, precision)
    assert config.use_cpu is False  # Accelerate's `use_cpu: true` would start a single process
    text = header(name)
    assert "accelerate launch --config_file training_scripts/accelerate/" + name in text.replace("\\\n#", "")
    for phrase in said:
        assert phrase in text, (name, phrase)
    if name == "multi_node.yaml":
        assert config.main_process_ip and config.main_process_port == 29500
    if name == "fsdp.yaml":
        assert config.fsdp_config["fsdp_version"] == 2
