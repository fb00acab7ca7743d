"""Depth Anything V2 (Small, Base, Large) as ``transformers`` builds it, for the converter's tests.

``hf_model(variant)`` is ``DepthAnythingForDepthEstimation`` with the published ``config.json`` of
``depth-anything/Depth-Anything-V2-<Variant>-hf`` and random weights (the slow parity tests run it). Run as
a script, it records each variant's tensor layout (every name and shape, as the Hub's file names them) in
``tests/data/depth_anything_v2_<variant>_hf_layout.json``: the fast tests build their fixture from that
record, which comes from ``transformers`` itself, not from the converter's own map. Small's record is the
file ``save_pretrained`` writes; Base's and Large's are the model's state dict built on the meta device
(the same names for Small, checked), which needs no memory for Large's 335M parameters.

``python tests/hf_depth_anything.py`` (needs ``pip install -e '.[parity]'``)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"
# Per variant, from the published config.json files: ViT width, depth and heads, the blocks the head reads
# (out_indices count from the embeddings: stage k is block k - 1), and the DPT head's widths.
CONFIGS = {
    "small": dict(hidden=384, layers=12, heads=6, out_indices=[3, 6, 9, 12], neck=[48, 96, 192, 384], fusion=64),
    "base": dict(hidden=768, layers=12, heads=12, out_indices=[3, 6, 9, 12], neck=[96, 192, 384, 768], fusion=128),
    "large": dict(hidden=1024, layers=24, heads=16, out_indices=[5, 12, 18, 24], neck=[256, 512, 1024, 1024], fusion=256),
}


def layout_path(variant: str) -> Path:
    return DATA / f"depth_anything_v2_{variant}_hf_layout.json"


def hf_config(variant: str):
    import transformers

    c = CONFIGS[variant]
    backbone = transformers.Dinov2Config(
        hidden_size=c["hidden"],
        num_hidden_layers=c["layers"],
        num_attention_heads=c["heads"],
        mlp_ratio=4,
        patch_size=14,
        image_size=518,
        layer_norm_eps=1e-6,
        layerscale_value=1.0,
        qkv_bias=True,
        use_swiglu_ffn=False,
        hidden_act="gelu",
        out_indices=c["out_indices"],
        apply_layernorm=True,
        reshape_hidden_states=False,
    )
    return transformers.DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=c["hidden"],
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=c["neck"],
        fusion_hidden_size=c["fusion"],
        head_in_index=-1,
        head_hidden_size=32,
        depth_estimation_type="relative",
    )


def hf_model(variant: str = "small"):
    """The transformers model of ``variant`` with every tensor random (layer scales and LayerNorms near one)."""
    import transformers

    model = transformers.DepthAnythingForDepthEstimation(hf_config(variant)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():  # every tensor, layer scales and LayerNorms included
            if t.dim() >= 2:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
            else:
                around_one = name.endswith("lambda1") or ("norm" in name and name.endswith("weight"))
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if around_one else 0.0))
    return model


def saved_layout(model) -> dict[str, list[int]]:
    """Every tensor of the file ``save_pretrained`` writes, by name, with its shape."""
    from safetensors import safe_open

    from s3d.depth.fetch_depth_anything import canonical_name

    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        with safe_open(str(Path(d) / "model.safetensors"), "pt") as f:
            return {canonical_name(k): list(f.get_slice(k).get_shape()) for k in sorted(f.keys())}


def meta_layout(variant: str) -> dict[str, list[int]]:
    """The tensor names and shapes of ``variant``'s transformers model, built on the meta device."""
    import transformers

    from s3d.depth.fetch_depth_anything import canonical_name

    with torch.device("meta"):
        model = transformers.DepthAnythingForDepthEstimation(hf_config(variant))
    return {canonical_name(k): list(v.shape) for k, v in sorted(model.state_dict().items())}


def published_layout(variant: str = "small") -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in json.loads(layout_path(variant).read_text())["tensors"].items()}


if __name__ == "__main__":
    import transformers

    small = saved_layout(hf_model("small"))
    assert small == meta_layout("small"), "the state dict and the saved file name the tensors differently"
    for variant in CONFIGS:
        layout = small if variant == "small" else meta_layout(variant)
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in layout.items()]
        layout_path(variant).write_text(f'{{"transformers": "{transformers.__version__}", "tensors": {{\n' + ",\n".join(lines) + "\n}}\n")
        print(f"{layout_path(variant)}: {len(layout)} tensors (transformers {transformers.__version__})")
