"""Segments: resume after an interruption, and one film shared between worker processes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import av
import pytest
from conftest import make_video

import s3d.convert as convert_module
from s3d.config import compose
from s3d.convert import convert, open_work_folder
from s3d.errors import S3DError
from s3d.io import atomic
from s3d.io.segments import WorkFolder, frame_pts, plan_segments

BASE = ["depth=tiny_random", "quiet=true", "video.preset=ultrafast"]


def run(*overrides: str) -> Path:
    return convert(compose("convert", [*BASE, *overrides]))[0]


def summary(path: Path) -> dict:
    """What must match between runs: frame count, every frame's timestamp, the audio packets."""
    with av.open(str(path)) as c:
        times = [round(f.time, 4) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size] if c.streams.audio else []
        mode = c.streams.video[0].metadata.get("stereo_mode")
    return {"frames": len(times), "times": times, "audio": audio, "stereo_mode": mode}


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_video(tmp_path / "film.mp4", width=64, height=48, frames=14)


def test_plan_cuts_by_frames_with_warmup():
    segs = plan_segments(list(range(0, 140, 10)), 5, warmup=2)
    assert [(s.start, s.end, s.frames, s.warmup_start) for s in segs] == [(0, 50, 5, 0), (50, 100, 5, 30), (100, None, 4, 80)]
    assert plan_segments(None, 5, 2)[0].end is None


def test_frame_pts_reads_packets_in_display_order(clip: Path):
    pts = frame_pts(clip)
    assert len(pts) == 14 and pts == sorted(pts) and len(set(pts)) == 14


@pytest.mark.parametrize("preset", ["ultrafast", "fast"])  # fast: B-frames, so dts runs behind pts
@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_segmented_output_matches_one_piece(clip: Path, tmp_path: Path, preset: str, container: str):
    whole = summary(run(f"input={clip}", f"output={tmp_path / ('a.' + container)}", "segment_frames=0", f"video.preset={preset}"))
    parts = summary(run(f"input={clip}", f"output={tmp_path / ('b.' + container)}", "segment_frames=4", f"video.preset={preset}"))
    assert parts == whole and whole["frames"] == 14 and whole["audio"]
    assert not list(tmp_path.glob(".*s3d-work"))  # the work folder is gone once joined


def interrupted_run(clip: Path, out: Path, monkeypatch, at: int) -> None:
    """A run killed (Ctrl-C) when it starts segment ``at``."""
    from s3d import convert as conv

    real = conv.convert_segment

    def killed(pipeline, info, seg, *args):
        if seg.index == at:
            raise KeyboardInterrupt
        real(pipeline, info, seg, *args)

    monkeypatch.setattr(conv, "convert_segment", killed)
    with pytest.raises(KeyboardInterrupt):
        run(f"input={clip}", f"output={out}", "segment_frames=4")
    monkeypatch.setattr(conv, "convert_segment", real)


def segments_converted(monkeypatch) -> list[int]:
    """From now on, the indices of the segments each run converts."""
    from s3d import convert as conv

    real, calls = conv.convert_segment, []
    monkeypatch.setattr(conv, "convert_segment", lambda *a: (calls.append(a[2].index), real(*a)))
    return calls


def test_killed_run_resumes_where_it_stopped(clip: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "o.mkv"
    interrupted_run(clip, out, monkeypatch, at=2)
    work = tmp_path / ".o.mkv.s3d-work"
    assert not out.exists() and sorted(p.name for p in work.iterdir()) == ["manifest.json", "seg_00000.mkv", "seg_00001.mkv"]
    calls = segments_converted(monkeypatch)
    run(f"input={clip}", f"output={out}", "segment_frames=4")
    assert calls == [2, 3]  # only what was missing
    reference = run(f"input={clip}", f"output={tmp_path / 'ref.mkv'}", "segment_frames=4")
    assert summary(out) == summary(reference)
    assert not work.exists()


@pytest.mark.parametrize("change", ["divergence=3.0", "resume=false"])
def test_other_settings_or_resume_false_start_afresh(clip: Path, tmp_path: Path, monkeypatch, change: str):
    out = tmp_path / "o.mkv"
    interrupted_run(clip, out, monkeypatch, at=1)
    calls = segments_converted(monkeypatch)
    run(f"input={clip}", f"output={out}", "segment_frames=4", change)
    assert calls == [0, 1, 2, 3]


def test_a_run_killed_before_any_segment_leaves_nothing(clip: Path, tmp_path: Path, monkeypatch):
    interrupted_run(clip, tmp_path / "o.mkv", monkeypatch, at=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.mp4"]


@pytest.mark.slow
def test_two_worker_processes_share_one_film(clip: Path, tmp_path: Path):
    shared = summary(run(f"input={clip}", f"output={tmp_path / 'w.mkv'}", "segment_frames=4", "workers=2"))
    alone = summary(run(f"input={clip}", f"output={tmp_path / 'a.mkv'}", "segment_frames=4"))
    assert shared == alone and shared["frames"] == 14


@pytest.mark.parametrize("resume", [False, True])
def test_workers_prepare_the_shared_work_folder_one_at_a_time(tmp_path: Path, monkeypatch, resume: bool):
    """Two workers start together on one film, the manifest write slowed to force them to overlap: only
    worker 0 writes or removes anything, the other opens what it prepared."""
    out, segments = tmp_path / "w.mkv", plan_segments(list(range(20)), 4, 0)
    if resume:  # a folder from an interrupted run, one segment done
        WorkFolder(out, "key", segments, resume=True).part(segments[0]).write_bytes(b"done")
    writes, errors, folders = [], [], {}
    real_replace = os.replace

    def slow_replace(a, b):
        writes.append(Path(b).name)
        time.sleep(0.3)
        real_replace(a, b)

    monkeypatch.setattr(atomic.os, "replace", slow_replace)
    barrier = threading.Barrier(2, timeout=10)
    monkeypatch.setattr(convert_module, "wait_for_workers", barrier.wait)

    def worker(rank: int) -> None:
        try:
            folders[rank] = open_work_folder(out, "key", segments, True, rank, 2)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(r,)) for r in (1, 0)]  # the other worker first
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert writes == ([] if resume else ["manifest.json"])
    assert folders[0].path == folders[1].path and (folders[1].path / "manifest.json").is_file()
    assert [folders[r].done(segments[0]) for r in (0, 1)] == [resume, resume]


def test_a_worker_refuses_a_work_folder_of_other_settings(tmp_path: Path):
    out, segments = tmp_path / "w.mkv", plan_segments(list(range(20)), 4, 0)
    with pytest.raises(S3DError, match="manifest is missing"):
        WorkFolder.join(out, "key", segments)
    WorkFolder(out, "key", segments, resume=True)
    with pytest.raises(S3DError, match="another input or other settings"):
        WorkFolder.join(out, "other key", segments)


# --- folders -----------------------------------------------------------------------------------------


def test_folder_converts_videos_and_photos_skips_failures_and_summarises(tmp_path: Path, caplog):
    import numpy as np
    from PIL import Image

    from s3d.errors import S3DError

    caplog.set_level("INFO", logger="s3d.folder")
    films = tmp_path / "films"
    (films / "sub").mkdir(parents=True)
    make_video(films / "a.mp4", width=64, height=48, frames=4)
    make_video(films / "sub" / "b.mp4", width=64, height=48, frames=4)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(films / "c.png")
    (films / "broken.mp4").write_bytes(b"not a video")
    (films / "notes.txt").write_text("not media")
    with pytest.raises(S3DError, match="1 of 3 files failed: broken.mp4"):
        convert(compose("convert", [*BASE, f"input={films}"]))
    names = sorted(p.name for p in films.iterdir())
    assert "a_LRF_Full_SBS.mkv" in names and "c_LRF_Full_SBS.png" in names and "c_wiggle.gif" in names
    assert not (films / "sub" / "b_LRF_Full_SBS.mkv").exists()  # not recursive
    assert "2 converted, 0 skipped, 1 failed" in caplog.text and "broken.mp4" in caplog.text
    # again, recursively, into another folder: the earlier outputs are not inputs; stop at the failure
    out = tmp_path / "out"
    out.mkdir()
    (films / "broken.mp4").unlink()
    written = convert(compose("convert", [*BASE, f"input={films}", f"output={out}", "recursive=true"]))
    assert sorted(str(p.relative_to(out)) for p in written) == ["a_LRF_Full_SBS.mkv", "c_LRF_Full_SBS.png", "c_wiggle.gif", "sub/b_LRF_Full_SBS.mkv"]
    # a second run skips what exists
    caplog.clear()
    assert convert(compose("convert", [*BASE, f"input={films}", f"output={out}", "recursive=true"])) == []
    assert "0 converted, 3 skipped, 0 failed" in caplog.text


def test_folder_on_error_stop_and_empty_folder(tmp_path: Path):
    from s3d.errors import S3DError

    (tmp_path / "a_bad.mp4").write_bytes(b"x")
    make_video(tmp_path / "b.mp4", width=64, height=48, frames=3)
    with pytest.raises(S3DError, match="1 of 1 files failed"):
        convert(compose("convert", [*BASE, f"input={tmp_path}", "on_error=stop"]))
    assert not (tmp_path / "b_LRF_Full_SBS.mkv").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(S3DError, match="no videos or photos"):
        convert(compose("convert", [*BASE, f"input={empty}"]))
