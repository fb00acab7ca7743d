"""Property tests (hypothesis): layout packing and the layout detection from names and metadata."""

from __future__ import annotations

import re

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s3d.convert import LAYOUT_SUFFIX
from s3d.layout import pack, packed_size, split
from s3d.layout.detect import METADATA_MODES, NAME_TOKENS, detect_layout, from_metadata, from_name
from s3d.layout.pack import CROSS

sizes = st.tuples(st.integers(1, 3), st.integers(2, 40), st.integers(2, 40))  # batch, height, width


def eyes(b: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


@given(sizes, st.sampled_from(["full_sbs", "full_ou"]), st.booleans(), st.integers(0, 2**16))
def test_full_pack_then_split_returns_the_eyes(size, layout, left_first, seed):
    left, right = eyes(*size, seed)
    packed = pack(left, right, layout, left_first=left_first)
    assert packed.shape[-2:] == packed_size(layout, *size[1:])
    a, b = split(packed, layout, left_first=left_first)
    assert torch.equal(a, left) and torch.equal(b, right)


@given(sizes, st.sampled_from(["half_sbs", "half_ou"]), st.booleans(), st.floats(0, 1), st.floats(0, 1))
def test_half_pack_then_split_keeps_size_order_and_flat_colours(size, layout, left_first, cl, cr):
    b, h, w = size
    left, right = torch.full((b, 3, h, w), cl), torch.full((b, 3, h, w), cr)
    a, c = split(pack(left, right, layout, left_first=left_first), layout, left_first=left_first)
    even = (h, 2 * (w // 2)) if layout == "half_sbs" else (2 * (h // 2), w)
    assert a.shape[-2:] == c.shape[-2:] == even
    torch.testing.assert_close(a, torch.full_like(a, cl), atol=1e-5, rtol=0)
    torch.testing.assert_close(c, torch.full_like(c, cr), atol=1e-5, rtol=0)


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8).filter(lambda t: t not in NAME_TOKENS and t not in ("half", "full"))
seps = st.sampled_from([".", "_", "-", " "])


@given(st.lists(words, max_size=4), st.sampled_from(sorted(NAME_TOKENS)), st.lists(words, max_size=4), seps, st.booleans())
def test_a_layout_token_anywhere_in_a_name_is_found(before, token, after, sep, upper):
    name = sep.join([*before, token.upper() if upper else token, *after]) + ".mkv"
    arrangement, left_first, _ = from_name(name)
    assert (arrangement, left_first) == (NAME_TOKENS[token][0], NAME_TOKENS[token][1])


@given(st.lists(words, min_size=1, max_size=6), seps)
def test_names_without_tokens_say_nothing(parts, sep):
    assert from_name(sep.join(parts) + ".mp4") is None


@given(st.text(max_size=60), st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=4))
@settings(max_examples=300)
def test_detection_never_raises_on_any_name_or_metadata(name, metadata):
    found = detect_layout(name, metadata, None)
    assert found is None or found.arrangement in ("sbs", "ou")


@given(st.sampled_from(sorted(METADATA_MODES)), st.text(max_size=30))
def test_metadata_wins_over_the_name(mode, name):
    found = detect_layout(name, {"stereo_mode": mode}, None)
    assert (found.arrangement, found.left_first, found.source) == (*METADATA_MODES[mode], "metadata")
    assert from_metadata({"stereo_mode": mode.upper()}) == METADATA_MODES[mode]


@given(st.sampled_from(["full_rgbd", "half_rgbd", "anaglyph"]), words, st.integers(64, 400), st.integers(64, 400))
def test_our_outputs_that_are_not_two_eyes_are_not_read_as_stereo(layout, stem, h, w):
    ph, pw = packed_size(layout, h, w)
    assert detect_layout(f"{stem}{LAYOUT_SUFFIX[layout]}.mkv", {}, torch.zeros(3, ph, pw)) is None


@given(words, st.integers(64, 400), st.integers(64, 400))
def test_our_vr180_names_read_back_as_two_eyes_side_by_side(stem, h, w):
    ph, pw = packed_size("vr180", h, w, canvas=256)
    found = detect_layout(f"{stem}{LAYOUT_SUFFIX['vr180']}.mkv", {}, torch.zeros(3, ph, pw))
    # side by side, left eye first (full or half is the aspect's guess: each canvas is square, its own projection)
    assert found is not None and found.arrangement == "sbs" and found.left_first and found.source == "name"


@given(
    st.sampled_from([k for k in LAYOUT_SUFFIX if k not in ("anaglyph", "vr180", "full_rgbd", "half_rgbd")]), words, st.integers(64, 400), st.integers(64, 400)
)
def test_our_own_output_names_are_read_back_as_what_we_wrote(layout, stem, h, w):
    ph, pw = packed_size(layout, h, w)
    found = detect_layout(f"{stem}{LAYOUT_SUFFIX[layout]}.mkv", {}, torch.zeros(3, ph, pw))
    # a cross-eyed file reads back as side by side with the right eye first
    assert found is not None and found.name == CROSS.get(layout, layout) and found.left_first == (layout not in CROSS) and found.source == "name"
    assert re.search(r"_(LRF?|TBF?|RL)_", LAYOUT_SUFFIX[layout])
