"""The engine's checkpoint state under FSDP2 (`torch.distributed.fsdp.fully_shard`) on 2 CPU processes (gloo):
the full model and optimizer state is gathered, written as safetensors + JSON by one process, loaded into a freshly
sharded model, and training continues with the same losses as without the interruption. (Accelerate itself does
not enable FSDP on a CPU process group, so this exercises `hf_rrg.training.sharded_state` directly.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from launch_helpers import cpu_env, free_port

SCRIPT = r'''
import json, sys
from pathlib import Path
import torch, torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
from hf_rrg.training.sharded_state import full_optimizer_state, load_full_optimizer_state
from hf_rrg.training.state_io import load_module_state, load_tensors_json, save_module_state, save_tensors_json

dist.init_process_group("gloo")
rank, folder = dist.get_rank(), Path(sys.argv[1])

def sharded_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    for layer in (model[0], model[2]):
        fully_shard(layer)
    fully_shard(model)
    return model, torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01)

def step(model, optimizer, i):
    generator = torch.Generator().manual_seed(100 * i + rank)
    x = torch.randn(8, 6, generator=generator)
    loss = ((model(x).squeeze(-1) - x.sum(-1)) ** 2).mean()
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    total = loss.detach().clone(); dist.all_reduce(total)
    return total.item() / dist.get_world_size()

model, optimizer = sharded_model()
straight = [step(model, optimizer, i) for i in range(2)]
model_state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
optimizer_state = full_optimizer_state(model, optimizer, sharded=True)
if rank == 0:
    save_module_state(folder / "model.safetensors", model_state)
    save_tensors_json(folder, "optimizer", optimizer_state)
dist.barrier()
straight += [step(model, optimizer, i) for i in range(2, 5)]

resumed, resumed_optimizer = sharded_model()  # fresh weights: the checkpoint must bring everything back
set_model_state_dict(resumed, load_module_state(folder / "model.safetensors"),
                     options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
load_full_optimizer_state(resumed, resumed_optimizer, load_tensors_json(folder, "optimizer"), sharded=True)
after = [step(resumed, resumed_optimizer, i) for i in range(2, 5)]
if rank == 0:
    print(json.dumps({"straight": straight, "after": after, "keys": sorted(optimizer_state["state"])}))
dist.destroy_process_group()
'''



@pytest.mark.slow
def test_fully_sharded_state_round_trips_through_safetensors_and_json(tmp_path: Path) -> None:
    script = tmp_path / "fsdp_state.py"
    script.write_text(SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(script), str(tmp_path)]  # fmt: skip
    env = cpu_env()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    assert result["keys"] == ["0.bias", "0.weight", "2.bias", "2.weight"]  # gathered, keyed by parameter name
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".py") == [
        "model.safetensors", "optimizer.json", "optimizer.safetensors"]
    for expected, resumed in zip(result["straight"][2:], result["after"]):
        assert resumed == pytest.approx(expected, abs=1e-6)
    assert result["straight"][-1] < result["straight"][0]  # it trained
