"""discover_videos: folders, globs, files and manifests, with duplicates and missing entries."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from wfvae_cli.errors import WfvaeError
from wfvae_cli.io.discover import VideoSource, discover_videos


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")  # discovery never decodes: any content will do
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for name in ["b.mp4", "a.MOV", "sub/c.webm", "sub/deeper/d.mkv", "sub/anim.gif"]:
        touch(root / name)
    for name in ["notes.txt", "thumb.png", ".hidden.mp4", "._a.mp4", ".git/e.mp4", "sub/.cache/f.mp4"]:
        touch(root / name)
    return root


def paths(found) -> list[str]:
    return [s.path for s in found.sources]


def test_directory_is_searched_recursively_sorted_without_hidden_or_non_videos(tree: Path) -> None:
    found = discover_videos([tree])
    expected = ["a.MOV", "b.mp4", "sub/anim.gif", "sub/c.webm", "sub/deeper/d.mkv"]
    assert paths(found) == [str(tree / p) for p in expected]
    assert found.skipped == []
    assert all(os.path.isabs(p) for p in paths(found))


def test_glob_pattern_keeps_video_files_and_expands_matched_folders(tree: Path) -> None:
    assert paths(discover_videos([str(tree / "**" / "*.mkv")])) == [str(tree / "sub/deeper/d.mkv")]
    # "data/s*" matches the folder "sub": it is searched like a folder input
    assert paths(discover_videos([str(tree / "s*")])) == [
        str(tree / p) for p in ["sub/anim.gif", "sub/c.webm", "sub/deeper/d.mkv"]
    ]
    # a glob never picks up manifests or other files (notes.txt, thumb.png)
    assert paths(discover_videos([str(tree / "*")])) == [str(tree / p) for p in ["a.MOV", "b.mp4"]] + [
        str(tree / p) for p in ["sub/anim.gif", "sub/c.webm", "sub/deeper/d.mkv"]
    ]


def test_explicit_file_of_any_extension_is_taken_and_paths_are_normalised(tree: Path, monkeypatch) -> None:
    monkeypatch.chdir(tree / "sub")
    found = discover_videos(["../thumb.png", "./deeper/../c.webm"])
    assert paths(found) == [str(tree / "sub/c.webm"), str(tree / "thumb.png")]


def test_order_does_not_depend_on_input_order(tree: Path) -> None:
    a = discover_videos([tree / "sub", tree / "b.mp4", tree / "a.MOV"])
    b = discover_videos([tree / "a.MOV", tree / "b.mp4", tree / "sub"])
    assert paths(a) == paths(b) == sorted(paths(a))


def test_txt_manifest_comments_relative_paths_and_missing_entries(
    tree: Path, tmp_path: Path, monkeypatch
) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    manifest = lists / "train.txt"
    manifest.write_text(
        f"# training videos\n\n../data/b.mp4\n  {tree / 'sub/c.webm'}  \n../data/gone.mp4\n../data/sub\n"
    )
    monkeypatch.chdir(tree / "sub")  # relative entries follow the manifest, not the working directory
    found = discover_videos([manifest])
    assert paths(found) == [str(tree / "b.mp4"), str(tree / "sub/c.webm")]
    assert [s.path for s in found.skipped] == [str(tree / "gone.mp4"), str(tree / "sub")]
    assert "file not found" in found.skipped[0].reason and f"{manifest}:5" in found.skipped[0].reason
    assert "is a directory" in found.skipped[1].reason


def test_csv_manifest_columns_metadata_and_bad_rows(tree: Path) -> None:
    manifest = tree / "meta.csv"
    manifest.write_text(
        "path,caption,start,end,aesthetic\n"
        'b.mp4,"a cat, sleeping",1.5,4,5.2\n'
        "a.MOV,,,,\n"
        "sub/c.webm,x,abc,,\n"
        "sub/c.webm,y,3,2,\n"
        "missing.mp4,z,,,\n"
    )
    found = discover_videos([manifest])
    assert found.sources == [
        VideoSource(str(tree / "a.MOV"), None, None, None, {"aesthetic": ""}, key="a.MOV"),
        VideoSource(str(tree / "b.mp4"), "a cat, sleeping", 1.5, 4.0, {"aesthetic": "5.2"}, key="b.mp4#t=1.5,4"),
    ]
    reasons = [s.reason for s in found.skipped]
    assert len(reasons) == 3
    assert f"{manifest}:4" in reasons[0] and "start 'abc' is not a number" in reasons[0]
    assert f"{manifest}:5" in reasons[1] and "not after start" in reasons[1]
    assert "file not found" in reasons[2]


def test_csv_without_path_column_is_a_user_error_naming_the_file(tree: Path) -> None:
    manifest = tree / "bad.csv"
    manifest.write_text("video,caption\nb.mp4,x\n")
    with pytest.raises(WfvaeError, match=r"bad\.csv: has no 'path' column \(found: video, caption\)"):
        discover_videos([manifest])


def test_jsonl_manifest_keeps_json_types_and_skips_bad_lines(tree: Path) -> None:
    manifest = tree / "meta.jsonl"
    rows = [
        {"path": "b.mp4", "caption": "a dog", "start": 0, "end": 2.5, "tags": ["pet"], "score": 0.9},
        {"path": str(tree / "sub/c.webm")},
    ]
    manifest.write_text(
        "\n".join(json.dumps(r) for r in rows) + '\n{not json\n[1, 2]\n{"caption": "no path"}\n'
    )
    found = discover_videos([manifest])
    assert found.sources == [
        VideoSource(str(tree / "b.mp4"), "a dog", 0.0, 2.5, {"tags": ["pet"], "score": 0.9}, key="b.mp4#t=0,2.5"),
        VideoSource(str(tree / "sub/c.webm"), key="sub/c.webm"),  # absolute, inside the manifest's folder
    ]
    reasons = [s.reason for s in found.skipped]
    assert "meta.jsonl:3: invalid JSON" in reasons[0]
    assert "meta.jsonl:4: line is not a JSON object" in reasons[1]
    assert "meta.jsonl:5: no path given" in reasons[2]


def test_duplicates_keep_the_first_occurrence_but_segments_are_distinct(tree: Path) -> None:
    (tree / "link.mp4").symlink_to(tree / "b.mp4")
    manifest = tree / "clips.csv"
    manifest.write_text("path,start,end\nb.mp4,0,2\nb.mp4,2,4\nb.mp4,0,2\nlink.mp4,,\n")
    found = discover_videos([tree / "b.mp4", manifest])
    assert [(s.path, s.start, s.end) for s in found.sources] == [
        (str(tree / "b.mp4"), None, None),
        (str(tree / "b.mp4"), 0.0, 2.0),
        (str(tree / "b.mp4"), 2.0, 4.0),
    ]
    assert [s.path for s in found.skipped] == [str(tree / "b.mp4"), str(tree / "link.mp4")]
    assert found.skipped[0].reason.startswith(f"duplicate of {tree / 'b.mp4'} [0s, 2s)")
    assert found.skipped[1].reason.startswith(f"duplicate of {tree / 'b.mp4'} (listed again at")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "nope.mp4", "does not exist"),
        (lambda root: root / "empty_dir", "contains no video files"),
        (lambda root: str(root / "*.avi"), "matches no video files"),
        (lambda root: root / "empty.txt", "the manifest lists no videos"),
    ],
    ids=["missing", "empty-folder", "glob-no-match", "empty-manifest"],
)
def test_inputs_that_yield_nothing_are_user_errors(tree: Path, make, message: str) -> None:
    (tree / "empty_dir").mkdir()
    (tree / "empty.txt").write_text("# nothing yet\n\n")
    item = make(tree)
    with pytest.raises(WfvaeError, match=message) as err:
        discover_videos([tree / "b.mp4", item])
    assert Path(str(item)).name in str(err.value) and "\n" not in str(err.value)


def test_video_source_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        VideoSource("/x.mp4").path = "/y.mp4"  # type: ignore[misc]
