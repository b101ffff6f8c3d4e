"""Register hf-rrg's configs, models and processing classes with the transformers Auto classes, without importing
transformers (or torch) on ``import hf_rrg``.

``import hf_rrg`` calls `install`: it registers at once when transformers' Auto classes are already loaded, and
otherwise puts a post-import hook on `sys.meta_path` that registers right after the import that loads them. So
``import hf_rrg`` followed by ``from transformers import AutoConfig; AutoConfig.for_model("r2gencmn")`` (or
``AutoModelForImageTextToText.from_pretrained(run_dir)``, or ``pipeline("radiology-report-generation", ...)``)
works as before, and the CLI's light commands (``--help``, ``label``, ``evaluate``) never import torch.

"Right after" means once the outermost import of a `transformers` or `hf_rrg` module in this thread has finished
(a per-thread depth count around the modules' execution), never in the middle of one: registering imports the
models and `hf_rrg.hub`, which import transformers and hf-rrg modules that may then still be half-initialised. Once
registration is done the hook lets every import pass untouched.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

# The module every Auto class, `pipeline()` and `from_pretrained` resolves model types through.
AUTO_CONFIG_MODULE = "transformers.models.auto.configuration_auto"
WATCHED_PACKAGES = ("transformers", "hf_rrg")


def register_auto_classes() -> None:
    """Idempotent: registers every hf-rrg config, tokenizer, image processor, processor and model with the
    transformers Auto classes, and the `radiology-report-generation` pipeline task. Imports torch and the models."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForImageTextToText,
        AutoModelForSeq2SeqLM,
        AutoProcessor,
        AutoTokenizer,
    )

    from . import modeling
    from .hub.pipeline_registration import register_pipeline

    models = {
        modeling.R2GenConfig: modeling.R2GenForConditionalGeneration,
        modeling.R2GenCMNConfig: modeling.R2GenCMNForConditionalGeneration,
        modeling.XProNetConfig: modeling.XProNetForConditionalGeneration,
        modeling.CoAttConfig: modeling.CoAttForConditionalGeneration,
        modeling.DCRRGConfig: modeling.DCRRGForConditionalGeneration,
        modeling.ASGKConfig: modeling.ASGKForConditionalGeneration,
        modeling.ITHNConfig: modeling.ITHNForConditionalGeneration,
    }
    for config_class in (modeling.RRGConfig, *models):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoTokenizer.register(config_class, tokenizer_class=modeling.RRGTokenizer, exist_ok=True)
        # One PIL-based class serves whichever backend transformers asks for (it never needs torchvision).
        AutoImageProcessor.register(
            config_class,
            image_processor_classes={
                "pil": modeling.RRGImageProcessor,
                "torchvision": modeling.RRGImageProcessor,
            },
            exist_ok=True,
        )
        AutoProcessor.register(config_class, modeling.RRGProcessor, exist_ok=True)
    for config_class, model_class in models.items():
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoModelForImageTextToText.register(config_class, model_class, exist_ok=True)
    # DCRRG's P-Tuning v2 adapter (task type SEQ_2_SEQ_LM): PEFT's `AutoPeftModelForSeq2SeqLM` loads its base
    # through `AutoModelForSeq2SeqLM`.
    AutoModelForSeq2SeqLM.register(modeling.DCRRGConfig, modeling.DCRRGForConditionalGeneration, exist_ok=True)
    register_pipeline()


class _Registration:
    """Runs `register_auto_classes` once, when transformers' Auto classes are loaded and no watched import is in
    progress in this thread."""

    def __init__(self) -> None:
        self.done = False
        self._running = False
        self._lock = threading.RLock()
        self._depth = threading.local()

    @property
    def depth(self) -> int:
        """How many watched modules this thread is executing (nested imports)."""
        return getattr(self._depth, "value", 0)

    @depth.setter
    def depth(self, value: int) -> None:
        self._depth.value = value

    def run_if_due(self) -> None:
        if self.done or self.depth or AUTO_CONFIG_MODULE not in sys.modules:
            return
        with self._lock:
            if self.done or self._running:
                return
            self._running = True
            try:
                register_auto_classes()
                self.done = True
            finally:
                self._running = False


_REGISTRATION = _Registration()


def _watched(name: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in WATCHED_PACKAGES)


def _counted(exec_module: Callable[[ModuleType], None]) -> Callable[[ModuleType], None]:
    """`exec_module` that counts this thread's watched-import depth and registers when the outermost one ends."""

    def exec_counted(module: ModuleType) -> None:
        depth = _REGISTRATION.depth
        _REGISTRATION.depth = depth + 1
        try:
            exec_module(module)
        finally:
            _REGISTRATION.depth = depth
        _REGISTRATION.run_if_due()

    exec_counted.hf_rrg_counted = True  # type: ignore[attr-defined]
    return exec_counted


class _RegisterAfterImportFinder:
    """A `sys.meta_path` finder (duck-typed: `importlib.abc` costs 40 ms to import) that finds nothing itself: it
    asks the other finders for a watched module's spec and wraps its loader's `exec_module` with `_counted`."""

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> Any:
        if _REGISTRATION.done or not _watched(fullname):
            return None
        for finder in sys.meta_path:
            if isinstance(finder, _RegisterAfterImportFinder) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        # A loader instance (not a class like BuiltinImporter) that serves this module; a loader shared by many
        # modules (zipimport) is wrapped once.
        if (
            exec_module is not None
            and not isinstance(loader, type)
            and not hasattr(exec_module, "hf_rrg_counted")
        ):
            loader.exec_module = _counted(exec_module)
        return spec


def install() -> None:
    """Called by ``import hf_rrg``: register now if transformers' Auto classes are loaded, else hook the imports that
    may load them (idempotent)."""
    if _REGISTRATION.done:
        return
    if not any(isinstance(finder, _RegisterAfterImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImportFinder())
    _REGISTRATION.run_if_due()
