"""Layout stage: pack two eyes into one frame (SBS, over-under, anaglyph) and split them again; an eye beside its depth (RGB+D)."""

from s3d.layout.anaglyph import ANAGLYPH_METHODS, anaglyph
from s3d.layout.gif import wiggle_frames
from s3d.layout.pack import LAYOUTS, RGBD, pack, pack_rgbd, packed_size, split

__all__ = ["ANAGLYPH_METHODS", "anaglyph", "LAYOUTS", "RGBD", "pack", "pack_rgbd", "packed_size", "split", "wiggle_frames"]
