"""CoAtt (Jing, Xie, Xing, "On the Automatic Generation of Medical Imaging Reports", ACL 2018).

Data flow (§3, equation numbers are the paper's): each view -> timm CNN (VGG-19) -> regions {v_n} (14x14x512 at
224 px) and the MLC (VGG's fc6/fc7 + a linear layer) -> tag distribution (Eq. 1); the embeddings of the top-M tags
are the semantic features {a_m}. Multi-view studies: the regions of the views are concatenated (as R2Gen does for
IU X-Ray's two views; missing views are masked out of the attention) and the MLC's fc feature is averaged over the
real views. A sentence LSTM unrolls over sentences: co-attention from h^(s-1) (Eq. 2-4) gives ctx^(s), the topic
t^(s) (Eq. 5) and p(STOP) (Eq. 6); a word LSTM reads [t^(s), <bos>, words] and predicts the words (Eq. 7), the
sentence's closing `.` included. Loss: Eq. 8 + the attention regularisation of Eq. 9.

Reports enter and leave as the flat token ids every hf-rrg model uses (`<bos> w .. . w .. . <eos>`):
`split_into_sentences` turns them into (batch, sentences, words) tensors, and `generate()` joins the sentences back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_coatt import CoAttConfig
from .visual_extractor import VisualExtractor, checked_views


def split_into_sentences(
    token_ids: torch.Tensor,
    sentence_end_token_id: int,
    bos_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
    max_sentences: int,
    max_words_per_sentence: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn flat report ids (batch, length) into sentences (batch, S, W) padded with `pad_token_id`, and counts (batch,).

    `<bos>`, padding and -100 are skipped; reading stops at `<eos>`. Each sentence keeps its closing `.`; a last
    fragment without one (cut by `<eos>` or by the end of the row) is closed by `<eos>` instead. Fragments with no
    word (`. .`) are dropped. At most `max_sentences` sentences are kept, each cut to `max_words_per_sentence`
    tokens, its closing token included. S and W are the largest count and length in the batch (at least 1).
    """
    if token_ids.dim() != 2:
        raise ValueError(f"report ids must be (batch, length), got shape {tuple(token_ids.shape)}")
    if max_words_per_sentence < 2:
        raise ValueError(f"max_words_per_sentence must be at least 2 (a word and its `.`), got {max_words_per_sentence}")
    skipped = {bos_token_id, pad_token_id, -100}
    reports: list[list[list[int]]] = []
    for row in token_ids.tolist():
        sentences: list[list[int]] = []
        words: list[int] = []
        for token in row:
            if token in skipped:
                continue
            if token == eos_token_id:
                break
            if token == sentence_end_token_id:
                if words:
                    sentences.append(words[: max_words_per_sentence - 1] + [token])
                words = []
            else:
                words.append(token)
        if words:
            sentences.append(words[: max_words_per_sentence - 1] + [eos_token_id])
        reports.append(sentences[:max_sentences])
    num_sentences = max(1, max(len(sentences) for sentences in reports))
    num_words = max([1] + [len(sentence) for sentences in reports for sentence in sentences])
    output = token_ids.new_full((len(reports), num_sentences, num_words), pad_token_id)
    for b, sentences in enumerate(reports):
        for s, sentence in enumerate(sentences):
            output[b, s, : len(sentence)] = torch.tensor(sentence, dtype=output.dtype)
    counts = torch.tensor([len(sentences) for sentences in reports], device=token_ids.device)
    return output, counts


@dataclass
class CoAttEncoderOutput(ModelOutput):
    """Regions (batch, V * N, D) with their mask, the MLC's fc feature (batch, F), tag logits (batch, L), the top-M
    tag indices (batch, M) and their embeddings {a_m} (batch, M, E)."""

    regions: torch.Tensor | None = None
    region_mask: torch.Tensor | None = None
    fc_features: torch.Tensor | None = None
    tag_logits: torch.Tensor | None = None
    top_tags: torch.Tensor | None = None
    tag_embeddings: torch.Tensor | None = None


@dataclass
class CoAttOutput(ModelOutput):
    """`loss` is Eq. 8 + Eq. 9 (λ-weighted); the components are unweighted (tag loss None without `tag_labels`).

    logits: word logits (batch, S, W, vocab); stop_logits (batch, S, 2) over {CONTINUE=0, STOP=1};
    visual_attention (batch, S, regions) and semantic_attention (batch, S, M) (None when that branch is off).
    """

    loss: torch.Tensor | None = None
    tag_loss: torch.Tensor | None = None
    stop_loss: torch.Tensor | None = None
    word_loss: torch.Tensor | None = None
    regularization_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    stop_logits: torch.Tensor | None = None
    tag_logits: torch.Tensor | None = None
    visual_attention: torch.Tensor | None = None
    semantic_attention: torch.Tensor | None = None


class CoAttVisualEncoder(nn.Module):
    """Regions and tag prediction (§3.2, Eq. 1).

    For a VGG backbone (timm `vgg*`: a `features` stack ending in max-pool, and `pre_logits` = fc6/fc7) the last
    max-pool is taken out of the region path, so the regions are the last convolutional layer (14x14x512 at 224 px),
    and the MLC is pool -> fc6 -> fc7 (4096) -> Linear(L), i.e. "the last two fully connected layers of VGG-19".
    Any other backbone gets two new Linear(mlc_hidden_size) + ReLU layers over the average-pooled regions.
    """

    def __init__(self, config: CoAttConfig) -> None:
        super().__init__()
        self.visual_extractor = VisualExtractor(config.visual_backbone)
        backbone = self.visual_extractor.backbone
        features = getattr(backbone, "features", None)
        self.uses_backbone_fc = (
            isinstance(features, nn.Sequential)
            and isinstance(features[-1], nn.MaxPool2d)
            and isinstance(getattr(backbone, "pre_logits", None), nn.Module)
        )
        if self.uses_backbone_fc:
            self.region_pool = features[-1]
            features[-1] = nn.Identity()
            self.fc_size = int(getattr(backbone, "head_hidden_size", config.mlc_hidden_size))
            self.mlc_fc = None
        else:
            self.region_pool = None
            size = config.mlc_hidden_size
            self.mlc_fc = nn.Sequential(
                nn.Linear(self.visual_extractor.num_features, size), nn.ReLU(), nn.Linear(size, size), nn.ReLU()
            )
            self.fc_size = size
        self.region_size = self.visual_extractor.num_features
        self.mlc_classifier = nn.Linear(self.fc_size, config.num_tags)

    def fc_feature(self, feature_map: torch.Tensor) -> torch.Tensor:
        """The MLC's hidden (fc7) feature of each view: (n, C, h, w) -> (n, F)."""
        if self.uses_backbone_fc:
            return self.visual_extractor.backbone.pre_logits(self.region_pool(feature_map)).mean(dim=(2, 3))
        return self.mlc_fc(feature_map.mean(dim=(2, 3)))

    def forward(
        self, pixel_values: torch.Tensor, view_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns regions (B, V*N, D), region mask (B, V*N), fc feature averaged over real views (B, F), tag logits (B, L)."""
        pixel_values, view_mask = checked_views(pixel_values, view_mask)
        batch, views = pixel_values.shape[:2]
        feature_map = self.visual_extractor.backbone.forward_features(pixel_values[view_mask])
        if feature_map.dim() != 4:
            raise ValueError(
                f"CoAtt needs a CNN backbone with a (n, C, h, w) feature map; {self.visual_extractor.backbone_name!r} gave "
                f"shape {tuple(feature_map.shape)}."
            )
        regions = feature_map.flatten(2).transpose(1, 2)
        fc = self.fc_feature(feature_map)
        length, channels = regions.shape[1:]
        all_regions = regions.new_zeros(batch, views, length, channels)
        all_regions[view_mask] = regions
        all_fc = fc.new_zeros(batch, views, fc.size(-1))
        all_fc[view_mask] = fc
        weights = view_mask.to(fc.dtype).unsqueeze(-1)
        study_fc = (all_fc * weights).sum(dim=1) / weights.sum(dim=1)
        region_mask = view_mask.repeat_interleave(length, dim=1)
        return all_regions.reshape(batch, views * length, channels), region_mask, study_fc, self.mlc_classifier(study_fc)


class SoftAttention(nn.Module):
    """One branch of the co-attention (Eq. 2 or 3): α_n ∝ exp(W_att tanh(W x_n + W_h h)), context Σ_n α_n x_n."""

    def __init__(self, feature_size: int, hidden_size: int) -> None:
        super().__init__()
        self.feature_projection = nn.Linear(feature_size, hidden_size, bias=False)  # W_v / W_a
        self.hidden_projection = nn.Linear(hidden_size, hidden_size, bias=False)  # W_v,h / W_a,h
        self.score = nn.Linear(hidden_size, 1, bias=False)  # W_vatt / W_aatt

    def forward(
        self, features: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, N, d), hidden (B, H), mask (B, N) bool -> context (B, d), weights (B, N) summing to one."""
        scores = self.score(torch.tanh(self.feature_projection(features) + self.hidden_projection(hidden)[:, None]))
        scores = scores.squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)
        return torch.einsum("bn,bnd->bd", weights, features), weights


class CoAttention(nn.Module):
    """f_coatt (§3.3): visual and semantic soft attention from h_sent^(s-1), ctx = W_fc [v_att; a_att] (Eq. 4).

    `mode` (Table 1): "co" both branches, "visual" / "semantic" one branch (ctx = W_fc of its context), "none"
    ctx = W_fc of the MLC's fc feature (Ours-no-Attention; the same context at every sentence).
    """

    def __init__(self, mode: str, region_size: int, tag_size: int, fc_size: int, hidden_size: int) -> None:
        super().__init__()
        self.mode = mode
        self.visual = SoftAttention(region_size, hidden_size) if mode in ("co", "visual") else None
        self.semantic = SoftAttention(tag_size, hidden_size) if mode in ("co", "semantic") else None
        context_input = {"co": region_size + tag_size, "visual": region_size, "semantic": tag_size, "none": fc_size}
        self.fc = nn.Linear(context_input[mode], hidden_size)  # W_fc

    def forward(
        self,
        regions: torch.Tensor,
        region_mask: torch.Tensor | None,
        tags: torch.Tensor,
        fc_features: torch.Tensor,
        hidden: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns ctx (B, H), visual weights α (B, N) or None, semantic weights β (B, M) or None."""
        parts, alpha, beta = [], None, None
        if self.visual is not None:
            context, alpha = self.visual(regions, hidden, region_mask)
            parts.append(context)
        if self.semantic is not None:
            context, beta = self.semantic(tags, hidden)
            parts.append(context)
        if not parts:
            parts.append(fc_features)
        return self.fc(torch.cat(parts, dim=-1)), alpha, beta


class CoAttPreTrainedModel(PreTrainedModel):
    """Base class: config class, weight initialisation (each layer's PyTorch default)."""

    config_class = CoAttConfig
    base_model_prefix = "coatt"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _supports_cache_class = False

    def _init_weights(self, module: nn.Module) -> None:
        reset = getattr(module, "reset_parameters", None)
        if reset is not None:
            reset()


class CoAttForConditionalGeneration(CoAttPreTrainedModel, GenerationMixin):
    """CoAtt: MLC tags + co-attention + sentence LSTM with stop control + word LSTM; `generate()` decodes
    hierarchically (greedy) and returns flat `<bos> ... <eos>` ids like every hf-rrg model."""

    def __init__(self, config: CoAttConfig) -> None:
        super().__init__(config)
        hidden, embedding = config.hidden_size, config.embedding_size
        self.visual_encoder = CoAttVisualEncoder(config)
        self.tag_embedding = nn.Embedding(config.num_tags, embedding)  # separate from the word embeddings (§4.2)
        self.co_attention = CoAttention(
            config.attention, self.visual_encoder.region_size, embedding, self.visual_encoder.fc_size, hidden
        )
        self.sentence_lstm = nn.LSTMCell(hidden, hidden)
        self.topic_hidden = nn.Linear(hidden, embedding, bias=False)  # W_t,hsent (Eq. 5)
        self.topic_context = nn.Linear(hidden, embedding, bias=False)  # W_t,ctx (Eq. 5)
        self.stop_previous = nn.Linear(hidden, hidden, bias=False)  # W_stop,s-1 (Eq. 6)
        self.stop_current = nn.Linear(hidden, hidden, bias=False)  # W_stop,s (Eq. 6)
        self.stop_head = nn.Linear(hidden, 2)  # W_stop over {CONTINUE=0, STOP=1} (Eq. 6; the bias is ours)
        self.word_embedding = nn.Embedding(config.vocab_size, embedding, padding_idx=config.pad_token_id)
        self.word_lstm = nn.LSTM(embedding, hidden, batch_first=True)
        self.word_head = nn.Linear(hidden, config.vocab_size)  # W_out (Eq. 7)
        self.post_init()
        generation = self.generation_config
        generation.num_beams = 1
        generation.max_new_tokens = config.max_sentences * config.max_words_per_sentence + 1  # words + <eos>
        generation.decoder_start_token_id = config.bos_token_id
        generation.bos_token_id = config.bos_token_id
        generation.eos_token_id = config.eos_token_id
        generation.pad_token_id = config.pad_token_id

    def load_pretrained_backbone(self) -> None:
        """ImageNet weights for the CNN (regions and, for VGG, the MLC's fc6/fc7), as `config.visual_pretrained` asks."""
        self.visual_encoder.visual_extractor.load_pretrained_backbone()

    def _sentence_end_token_id(self) -> int:
        token = self.config.sentence_end_token_id
        if token is None:
            raise ValueError(
                "config.sentence_end_token_id is not set: CoAtt splits reports into sentences at the `.` token. "
                "Set it with `config.sentence_end_token_id = tokenizer.convert_tokens_to_ids('.')`."
            )
        return int(token)

    def encode(self, pixel_values: torch.Tensor, view_mask: torch.Tensor | None = None) -> CoAttEncoderOutput:
        """Regions, MLC tag logits (Eq. 1) and the embeddings of the top-M predicted tags (§3.2)."""
        regions, region_mask, fc, tag_logits = self.visual_encoder(pixel_values, view_mask)
        top = min(self.config.num_semantic_tags, self.config.num_tags)
        top_tags = tag_logits.topk(top, dim=-1).indices
        return CoAttEncoderOutput(
            regions=regions,
            region_mask=region_mask,
            fc_features=fc,
            tag_logits=tag_logits,
            top_tags=top_tags,
            tag_embeddings=self.tag_embedding(top_tags),
        )

    def sentence_step(
        self, encoded: CoAttEncoderOutput, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """One sentence-LSTM step from (h^(s-1), c^(s-1)): new state, topic t^(s) (Eq. 5), stop logits (Eq. 6), α, β."""
        previous, cell = state
        context, alpha, beta = self.co_attention(
            encoded.regions, encoded.region_mask, encoded.tag_embeddings, encoded.fc_features, previous
        )
        hidden, cell = self.sentence_lstm(context, (previous, cell))
        topic = torch.tanh(self.topic_hidden(hidden) + self.topic_context(context))
        stop_logits = self.stop_head(torch.tanh(self.stop_previous(previous) + self.stop_current(hidden)))
        return (hidden, cell), topic, stop_logits, alpha, beta

    def _initial_state(self, batch: int, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = reference.new_zeros(batch, self.config.hidden_size)
        return zeros, zeros.clone()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        tag_labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: CoAttEncoderOutput | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CoAttOutput:
        """Teacher-forced pass over the sentences of the reports, with the loss of Eq. 8-9.

        Args:
            pixel_values: (batch, views, 3, H, W) from `RRGImageProcessor` (or (batch, 3, H, W)).
            view_mask: (batch, views) bool, False for padded views.
            labels: (batch, length) report ids (the project's shifted labels `w1 .. <eos>` with -100 padding, or the
                tokenizer's `<bos> .. <eos>` ids); split into sentences at `config.sentence_end_token_id`.
            tag_labels: (batch, num_tags) multi-hot ground-truth tags l for ℓ_tag (omitted: no tag loss).
            decoder_input_ids / decoder_attention_mask: accepted for the shared collator and ignored (`labels`
                carries the report; `decoder_input_ids` is used when `labels` is missing).
        """
        if encoder_outputs is None:
            if pixel_values is None:
                raise ValueError("Pass `pixel_values` (or precomputed `encoder_outputs`).")
            encoder_outputs = self.encode(pixel_values, view_mask)
        report = labels if labels is not None else decoder_input_ids
        if report is None:
            raise ValueError("Pass `labels` (the report ids): CoAtt's forward is a teacher-forced training pass.")
        config = self.config
        sentences, counts = split_into_sentences(
            report,
            self._sentence_end_token_id(),
            config.bos_token_id,
            config.eos_token_id,
            config.pad_token_id,
            config.max_sentences,
            config.max_words_per_sentence,
        )
        batch, num_sentences, num_words = sentences.shape
        state = self._initial_state(batch, encoder_outputs.regions)
        topics, stops, alphas, betas = [], [], [], []
        for _ in range(num_sentences):
            state, topic, stop_logits, alpha, beta = self.sentence_step(encoder_outputs, state)
            topics.append(topic)
            stops.append(stop_logits)
            alphas.append(alpha)
            betas.append(beta)
        topics_t = torch.stack(topics, dim=1)  # (B, S, E)
        stop_logits = torch.stack(stops, dim=1)  # (B, S, 2)
        # Word LSTM (§3.5): inputs [t^(s), <bos>, w_1 .. w_{T-1}]; outputs after <bos> predict w_1 .. w_T.
        start = self.word_embedding(sentences.new_full((batch, num_sentences, 1), config.bos_token_id))
        words = self.word_embedding(sentences[:, :, :-1])
        inputs = torch.cat([topics_t.unsqueeze(2), start, words], dim=2).flatten(0, 1)
        hidden, _ = self.word_lstm(inputs)
        logits = self.word_head(hidden[:, 1:]).view(batch, num_sentences, num_words, -1)

        sentence_mask = torch.arange(num_sentences, device=counts.device)[None] < counts[:, None]  # (B, S)
        word_targets = sentences.masked_fill(sentences == config.pad_token_id, -100)
        word_loss = F.cross_entropy(logits.float().flatten(0, 2), word_targets.flatten(), ignore_index=-100, reduction="sum")
        word_loss = word_loss / batch
        stop_targets = (torch.arange(num_sentences, device=counts.device)[None] == (counts[:, None] - 1)).long()
        stop_terms = F.cross_entropy(stop_logits.float().flatten(0, 1), stop_targets.flatten(), reduction="none")
        stop_loss = (stop_terms.view(batch, num_sentences) * sentence_mask).sum() / batch
        alpha_t = torch.stack(alphas, dim=1) if alphas[0] is not None else None
        beta_t = torch.stack(betas, dim=1) if betas[0] is not None else None
        regularization = attention_regularization(alpha_t, beta_t, sentence_mask, encoder_outputs.region_mask)
        tag_loss = normalized_tag_loss(encoder_outputs.tag_logits, tag_labels) if tag_labels is not None else None

        loss = config.lambda_sent * stop_loss + config.lambda_word * word_loss + config.lambda_reg * regularization
        if tag_loss is not None:
            loss = loss + config.lambda_tag * tag_loss
        return CoAttOutput(
            loss=loss,
            tag_loss=tag_loss,
            stop_loss=stop_loss,
            word_loss=word_loss,
            regularization_loss=regularization,
            logits=logits,
            stop_logits=stop_logits,
            tag_logits=encoder_outputs.tag_logits,
            visual_attention=alpha_t,
            semantic_attention=beta_t,
        )

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
        max_sentences: int | None = None,
        max_words_per_sentence: int | None = None,
        stop_threshold: float | None = None,
        num_beams: int | None = None,
        length_penalty: float | None = None,
        max_new_tokens: int | None = None,
        max_length: int | None = None,
        do_sample: bool | None = None,
        generation_config: GenerationConfig | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Hierarchical decoding: sentences until p(STOP) > threshold (Eq. 6) or `max_sentences`; the words of each
        sentence by beam search over the word LSTM (`num_beams`, 1 = greedy) until `.` / `<eos>` or
        `max_words_per_sentence` (an `<eos>` word also ends the report). The sentence LSTM reads only the
        co-attention context, not the words, so a beam per sentence is exact hierarchical beam search: the best
        sentence (log-probability / length**`length_penalty`) is kept and the next sentence starts from it.

        Defaults come from `generation_config` (else `self.generation_config`): `num_beams`, `length_penalty`,
        `max_new_tokens` (tokens after `<bos>`, `<eos>` included; longer reports are cut and closed with `<eos>`;
        `max_length`, transformers' total length with `<bos>`, is `max_new_tokens + 1`). A report prompt
        (`decoder_input_ids` / `input_ids`, e.g. what the `image-text-to-text` pipeline passes) may only be empty
        (`<bos>`, then `<eos>`/`<pad>`): the sentence LSTM cannot continue given words.
        Returns (batch, length) ids `<bos> sentence .. sentence <eos>`, padded with `<pad>`.
        """
        settings = generation_config if generation_config is not None else self.generation_config
        beams = num_beams if num_beams is not None else getattr(settings, "num_beams", None) or 1
        penalty = length_penalty if length_penalty is not None else getattr(settings, "length_penalty", None)
        penalty = 1.0 if penalty is None else penalty
        new_tokens = _new_token_budget(max_new_tokens, max_length, settings)
        if do_sample or getattr(settings, "do_sample", False):
            raise ValueError("CoAtt generate() decodes by beam search (num_beams=1: greedy); sampling is not supported.")
        if beams < 1:
            raise ValueError(f"num_beams must be at least 1, got {beams}")
        if kwargs.get("no_repeat_ngram_size"):
            raise ValueError("CoAtt generate() does not support no_repeat_ngram_size; leave it unset.")
        self._check_empty_prompt(kwargs.pop("decoder_input_ids", None), kwargs.pop("input_ids", None))
        ignored = {"use_cache", "output_scores", "return_dict_in_generate", "attention_mask", "no_repeat_ngram_size"}
        unknown = sorted(set(kwargs) - ignored)
        if unknown:
            raise ValueError(
                f"CoAtt generate() does not accept {unknown}; it takes pixel_values, view_mask, max_sentences, "
                "max_words_per_sentence, stop_threshold, num_beams, length_penalty and max_new_tokens (or max_length)."
            )
        if pixel_values is None:
            raise ValueError("Pass `pixel_values` to generate().")
        config = self.config
        max_sentences = max_sentences or config.max_sentences
        max_words = max_words_per_sentence or config.max_words_per_sentence
        threshold = config.stop_threshold if stop_threshold is None else stop_threshold
        eos = config.eos_token_id
        encoded = self.encode(pixel_values, view_mask)
        batch = encoded.regions.size(0)
        state = self._initial_state(batch, encoded.regions)
        finished = torch.zeros(batch, dtype=torch.bool, device=encoded.regions.device)
        sentences: list[torch.Tensor] = []  # (B, T) each, pad after the sentence's end and for finished rows
        for _ in range(max_sentences):
            state, topic, stop_logits, _, _ = self.sentence_step(encoded, state)
            words = self.decode_sentence(topic, max_words, beams, penalty)
            sentences.append(words.masked_fill(finished.unsqueeze(1), config.pad_token_id))
            finished |= (words == eos).any(dim=1)
            finished |= stop_logits.softmax(dim=-1)[:, 1] > threshold
            if finished.all():
                break
        return self._assemble(sentences, batch, encoded.regions.device, new_tokens)

    def _check_empty_prompt(self, *prompts: torch.Tensor | None) -> None:
        """A prompt must hold no word: only `<bos>`, `<eos>` and `<pad>` (CoAtt cannot continue a report)."""
        config = self.config
        allowed = torch.tensor([config.bos_token_id, config.eos_token_id, config.pad_token_id])
        for prompt in prompts:
            if prompt is not None and not torch.isin(prompt.cpu(), allowed).all():
                raise ValueError(
                    "CoAtt generate() cannot continue a report prompt (its sentence LSTM reads no words); pass no "
                    "text, or an empty one."
                )

    def decode_sentence(self, topic: torch.Tensor, max_words: int, num_beams: int = 1, length_penalty: float = 1.0) -> torch.Tensor:
        """The words of one sentence from its topic (§3.5): the word LSTM reads t^(s), then `<bos>`, then its own
        words; beam search of width `num_beams` (1 = greedy). A hypothesis ends at `.` or `<eos>` (kept) or after
        `max_words` tokens. Returns the best hypothesis per row, (batch, T) padded with `<pad>`."""
        config = self.config
        batch, device = topic.size(0), topic.device
        ends = torch.tensor([self._sentence_end_token_id(), config.eos_token_id], device=device)
        _, (h, c) = self.word_lstm(topic.unsqueeze(1))
        h, c = h.repeat_interleave(num_beams, dim=1), c.repeat_interleave(num_beams, dim=1)
        scores = topic.new_full((batch, num_beams), float("-inf"), dtype=torch.float32)
        scores[:, 0] = 0.0  # one live hypothesis per row at the start (the others are copies)
        tokens = torch.full((batch * num_beams, 1), config.bos_token_id, dtype=torch.long, device=device)
        done = torch.zeros(batch * num_beams, dtype=torch.bool, device=device)
        rows = torch.arange(batch, device=device).unsqueeze(1) * num_beams
        for _ in range(max_words):
            output, (h, c) = self.word_lstm(self.word_embedding(tokens[:, -1:]), (h, c))
            log_probs = self.word_head(output[:, 0]).float().log_softmax(dim=-1)
            log_probs[:, [config.pad_token_id, config.bos_token_id]] = float("-inf")
            # A finished hypothesis can only be continued by <pad>, at no cost.
            log_probs[done] = float("-inf")
            log_probs[done, config.pad_token_id] = 0.0
            candidates = (scores.unsqueeze(-1) + log_probs.view(batch, num_beams, -1)).flatten(1)
            scores, flat = candidates.topk(num_beams, dim=-1)
            vocab = log_probs.size(-1)
            origin = (rows + torch.div(flat, vocab, rounding_mode="floor")).flatten()
            token = (flat % vocab).flatten()
            h, c, done, tokens = h[:, origin], c[:, origin], done[origin], tokens[origin]
            tokens = torch.cat([tokens, token.unsqueeze(1)], dim=1)
            done = done | torch.isin(token, ends)
            if done.all():
                break
        words = tokens[:, 1:]
        lengths = (words != config.pad_token_id).sum(dim=1).clamp_min(1).view(batch, num_beams).float()
        best = (scores / lengths**length_penalty).argmax(dim=-1)
        return words.view(batch, num_beams, -1)[torch.arange(batch, device=device), best]

    def _assemble(
        self, sentences: list[torch.Tensor], batch: int, device: torch.device, max_new_tokens: int | None = None
    ) -> torch.Tensor:
        """Join the sentences of every row (skipping pads, stopping at `<eos>`) into `<bos> ... <eos>` rows padded
        with `<pad>`, with at most `max_new_tokens` tokens after `<bos>`."""
        config = self.config
        tokens = torch.cat(sentences, dim=1).tolist() if sentences else [[] for _ in range(batch)]
        rows = []
        for row in tokens:
            words = [t for t in row if t != config.pad_token_id]
            if config.eos_token_id in words:
                words = words[: words.index(config.eos_token_id)]
            if max_new_tokens is not None:
                words = words[: max(max_new_tokens - 1, 0)]
            rows.append([config.bos_token_id, *words, config.eos_token_id])
        output = torch.full((batch, max(len(r) for r in rows)), config.pad_token_id, dtype=torch.long, device=device)
        for b, row in enumerate(rows):
            output[b, : len(row)] = torch.tensor(row, dtype=torch.long, device=device)
        return output


def _new_token_budget(max_new_tokens: int | None, max_length: int | None, settings: Any) -> int | None:
    """Tokens allowed after `<bos>`: `max_new_tokens`, else `max_length - 1` (transformers counts the start
    token), from the call first, then from the generation settings; None when nothing caps the report."""
    stored = (getattr(settings, "max_new_tokens", None), getattr(settings, "max_length", None))
    for new, total in ((max_new_tokens, max_length), stored):
        if new is not None:
            return int(new)
        if total is not None:
            return int(total) - 1
    return None


def normalized_tag_loss(tag_logits: torch.Tensor, tag_labels: torch.Tensor) -> torch.Tensor:
    """ℓ_tag (§3.6): cross-entropy between p_l = l / ||l||_1 and the MLC's softmax (Eq. 1), averaged over the
    reports that have at least one tag (0 when none has)."""
    if tag_labels.shape != tag_logits.shape:
        raise ValueError(f"tag_labels has shape {tuple(tag_labels.shape)}, expected {tuple(tag_logits.shape)}")
    labels = tag_labels.float()
    totals = labels.sum(dim=-1)
    target = labels / totals.clamp_min(1e-12).unsqueeze(-1)
    per_report = -(target * tag_logits.float().log_softmax(dim=-1)).sum(dim=-1)
    has_tags = totals > 0
    return (per_report * has_tags).sum() / has_tags.sum().clamp_min(1)


def attention_regularization(
    alpha: torch.Tensor | None,
    beta: torch.Tensor | None,
    sentence_mask: torch.Tensor,
    region_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """ℓ_re without λ_re (Eq. 9): Σ_n (1 - Σ_s α_{n,s})² + Σ_m (1 - Σ_s β_{m,s})², summed over the real sentences
    (sentence_mask (B, S)) and real regions (region_mask (B, N)), averaged over the batch. α (B, S, N), β (B, S, M)."""
    total = sentence_mask.new_zeros((), dtype=torch.float32)
    batch = sentence_mask.size(0)
    weights = sentence_mask.float().unsqueeze(-1)
    if alpha is not None:
        terms = (1.0 - (alpha.float() * weights).sum(dim=1)) ** 2
        if region_mask is not None:
            terms = terms * region_mask.float()
        total = total + terms.sum() / batch
    if beta is not None:
        total = total + ((1.0 - (beta.float() * weights).sum(dim=1)) ** 2).sum() / batch
    return total
