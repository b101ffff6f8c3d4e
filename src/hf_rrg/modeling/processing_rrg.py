"""`RRGProcessor`: the image processor and the report tokenizer of an hf-rrg model, as one object."""

from __future__ import annotations

from typing import Any

from transformers import BatchFeature, ProcessorMixin


class RRGProcessor(ProcessorMixin):
    """Turns studies (one or more chest X-ray views each) and reports into model inputs, and ids back to reports.

    `processor(images=..., text=...)` returns `pixel_values (batch, views, 3, H, W)` and `view_mask (batch, views)`
    from `RRGImageProcessor`, and `input_ids` / `attention_mask` from `RRGTokenizer` (cleaned, `<bos> ... <eos>`,
    padded to the longest report). `processor.batch_decode(ids, skip_special_tokens=True)` gives reports.

    With images, an empty `text` (`""`, or one `""` per study) is an empty report prompt: the output then holds
    `decoder_input_ids` of `<bos>` alone for every study, where `generate` starts (what the `image-text-to-text`
    pipeline passes). A non-empty text is tokenised as a report; `generate` continues it after dropping its `<eos>`.
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs) -> None:
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(
        self,
        images: Any = None,
        text: str | list[str] | None = None,
        *,
        augment: bool = False,
        generator: Any = None,
        max_length: int | None = None,
        padding: bool | str = True,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Process `images` (one study, a list of single-view studies, or a list of lists of views) and/or `text`.

        Args:
            augment: use the training transform (random crop and flip) instead of the evaluation resize.
            generator: seed or `numpy.random.Generator` for the training transform's randomness.
            max_length: truncate reports to this many tokens, `<bos>` and `<eos>` included.
            padding, return_tensors, **kwargs: passed to the tokenizer (padding, tensors) and image processor.
        """
        if images is None and text is None:
            raise ValueError("RRGProcessor needs `images`, `text` or both; got neither.")
        data: dict[str, Any] = {}
        if images is not None:
            data.update(
                self.image_processor(
                    images, augment=augment, generator=generator, return_tensors=return_tensors, **kwargs
                )
            )
        if text is not None:
            reports = [text] if isinstance(text, str) else list(text)
            if images is not None and all(not report.strip() for report in reports):
                if len(reports) not in (1, len(data["pixel_values"])):
                    raise ValueError(
                        f"Got {len(data['pixel_values'])} studies but {len(reports)} empty prompts; pass one."
                    )
                data["decoder_input_ids"] = [[self.tokenizer.bos_token_id]] * len(data["pixel_values"])
                return BatchFeature(data=data, tensor_type=return_tensors)
            if images is not None and len(reports) != len(data["pixel_values"]):
                raise ValueError(
                    f"Got {len(data['pixel_values'])} studies but {len(reports)} reports; pass one report per study."
                )
            data.update(
                self.tokenizer(
                    reports,
                    padding=padding,
                    truncation=max_length is not None,
                    max_length=max_length,
                    return_tensors=return_tensors,
                )
            )
        return BatchFeature(data=data, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", "view_mask", "input_ids", "attention_mask", "decoder_input_ids"]
