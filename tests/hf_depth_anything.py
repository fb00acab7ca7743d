"""Depth Anything V2 Small as ``transformers`` builds it, for the converter's tests.

``small_hf_model()`` is ``DepthAnythingForDepthEstimation`` with the published ``config.json`` of
``depth-anything/Depth-Anything-V2-Small-hf`` and random weights (the slow parity tests run it). Run as a
script, it records the layout of the file ``save_pretrained`` writes (every tensor name and shape, the
names the Hub's file uses) in ``tests/data/depth_anything_v2_small_hf_layout.json``: the fast tests build
their fixture from that record, which comes from ``transformers`` itself, not from the converter's own map.

``python tests/hf_depth_anything.py`` (needs ``pip install -e '.[parity]'``)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

LAYOUT = Path(__file__).parent / "data" / "depth_anything_v2_small_hf_layout.json"


def small_hf_model():
    import transformers

    backbone = transformers.Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        patch_size=14,
        image_size=518,
        layer_norm_eps=1e-6,
        layerscale_value=1.0,
        qkv_bias=True,
        use_swiglu_ffn=False,
        hidden_act="gelu",
        out_indices=[3, 6, 9, 12],  # stage k is the output of block k - 1: blocks 2, 5, 8, 11
        apply_layernorm=True,
        reshape_hidden_states=False,
    )
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=384,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[48, 96, 192, 384],
        fusion_hidden_size=64,
        head_in_index=-1,
        head_hidden_size=32,
        depth_estimation_type="relative",
    )
    model = transformers.DepthAnythingForDepthEstimation(config).eval()
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


def published_layout() -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in json.loads(LAYOUT.read_text())["tensors"].items()}


if __name__ == "__main__":
    import transformers

    layout = saved_layout(small_hf_model())
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in layout.items()]
    LAYOUT.write_text(f'{{"transformers": "{transformers.__version__}", "tensors": {{\n' + ",\n".join(lines) + "\n}}\n")
    print(f"{LAYOUT}: {len(layout)} tensors (transformers {transformers.__version__})")
