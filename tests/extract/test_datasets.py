"""Dataset adapters on small fixtures written in each official format."""

import re
from pathlib import Path

import pytest

from comode.extract.datasets import DatasetError, load_dataset, safe_video_id

ID_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def touch(root: Path, *relative: str) -> None:
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_folder_with_class_subfolders_and_hash_split(tmp_path):
    touch(
        tmp_path,
        *[f"cats/clip {i}.mp4" for i in range(100)],
        *[f"dogs/sub/ü {i}.MKV" for i in range(100)],
        "dogs/notes.txt",
        "dogs/.hidden.mp4",
    )
    index = load_dataset("folder", tmp_path)
    assert index.classes == ("cats", "dogs") and index.split_names == ("1",)
    assert len(index.videos) == 200
    by_source = {v.source: v for v in index.videos}
    assert by_source["dogs/sub/ü 7.MKV"].label == 1 and by_source["cats/clip 3.mp4"].class_name == "cats"
    test_share = sum(v.splits["1"] == "test" for v in index.videos) / 200
    assert 0.1 < test_share < 0.3
    again = load_dataset("folder", tmp_path)
    assert [(v.video_id, dict(v.splits)) for v in again.videos] == [(v.video_id, dict(v.splits)) for v in index.videos]
    assert all(ID_RULE.match(v.video_id) for v in index.videos)


def test_folder_takes_broadcast_camcorder_raw_and_gif_videos_but_not_audio(tmp_path):
    videos = [
        "a/cam.MTS",
        "a/disc.m2ts",
        "a/tape.dv",
        "a/dvd.vob",
        "a/news.mxf",
        "a/raw.h264",
        "a/raw.hevc",
        "a/vp9.ivf",
        "a/tgif.gif",
        "a/old.asf",
        "a/web.f4v",
    ]
    touch(tmp_path, *videos, "a/song.ogg", "a/cover.jpg", "a/subs.srt")
    assert sorted(v.source for v in load_dataset("folder", tmp_path).videos) == sorted(videos)


def test_folder_with_train_and_test_top_folders(tmp_path):
    touch(tmp_path, "train/a/1.mp4", "train/b/2.avi", "test/a/3.mp4")
    index = load_dataset("folder", tmp_path)
    assert index.classes == ("a", "b")
    assert {v.source: (v.label, v.splits["1"]) for v in index.videos} == {
        "train/a/1.mp4": (0, "train"),
        "train/b/2.avi": (1, "train"),
        "test/a/3.mp4": (0, "test"),
    }


def test_folder_survives_a_directory_symlink_loop(tmp_path):
    touch(tmp_path, "a/x.mp4")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    index = load_dataset("folder", tmp_path)
    assert [v.source for v in index.videos] == ["a/x.mp4"]


def write_ucf101(root: Path) -> None:
    touch(
        root,
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "Archery/v_Archery_g01_c01.avi",
        "Archery/v_Archery_g02_c03.avi",
    )
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 Archery\r\n\r\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
        "Archery/v_Archery_g02_c03.avi 2\nArchery/v_Archery_g09_c01.avi 2\n"
    )
    (lists / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\n../../etc/passwd\n"
    )
    (lists / "trainlist02.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n")
    (lists / "testlist02.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\n")


def test_ucf101_labels_splits_and_refused_entries(tmp_path):
    write_ucf101(tmp_path)
    index = load_dataset("ucf101", tmp_path)
    assert index.classes == ("ApplyEyeMakeup", "Archery") and index.split_names == ("1", "2")
    videos = {Path(v.source).name: v for v in index.videos}
    assert videos["v_Archery_g02_c03.avi"].label == 1
    assert dict(videos["v_ApplyEyeMakeup_g08_c01.avi"].splits) == {"1": "train", "2": "test"}
    assert dict(videos["v_ApplyEyeMakeup_g01_c01.avi"].splits) == {"1": "test", "2": "train"}
    assert dict(videos["v_Archery_g01_c01.avi"].splits) == {"1": "test"}
    assert ("Archery/v_Archery_g09_c01.avi", "not on disk") in index.missing
    assert ("../../etc/passwd", "outside dataset root") in index.missing


def test_ucf101_without_annotations_says_what_is_expected(tmp_path):
    touch(tmp_path, "A/v_A_g01_c01.avi")
    with pytest.raises(DatasetError, match="ucfTrainTestlist"):
        load_dataset("ucf101", tmp_path)


def test_hmdb51_split_files(tmp_path):
    touch(tmp_path, "brush_hair/a.avi", "brush_hair/b.avi", "cartwheel/c.avi")
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text("a.avi 1\nb.avi 2 \n")
    (splits / "brush_hair_test_split2.txt").write_text("a.avi 0\nb.avi 1\n")
    (splits / "cartwheel_test_split1.txt").write_text("c.avi 2\n/abs/evil.avi 1\n")
    index = load_dataset("hmdb51", tmp_path)
    assert index.classes == ("brush_hair", "cartwheel") and index.split_names == ("1", "2")
    videos = {Path(v.source).name: v for v in index.videos}
    assert dict(videos["a.avi"].splits) == {"1": "train"}  # 0 = not in split 2
    assert dict(videos["b.avi"].splits) == {"1": "test", "2": "train"}
    assert videos["c.avi"].label == 1
    assert ("/abs/evil.avi", "outside dataset root") in index.missing


def test_kinetics400_csv_both_layouts_and_quoted_labels(tmp_path):
    touch(
        tmp_path,
        "train/massaging person's head/abc_000010_000020.mp4",
        "val/zzz_000001_000011.mkv",
        "train/passing American football (in game)/q-1_000000_000010.mp4",
    )
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    (annotations / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        '"massaging person\'s head",abc,10,20,train,0\n'
        '"passing American football (in game)",q-1,0,10,train,0\n'
        '"massaging person\'s head",gone,0,10,train,0\n'
    )
    (annotations / "validate.csv").write_text(
        'label,youtube_id,time_start,time_end,split\n"passing American football (in game)",zzz,1,11,validate\n'
    )
    index = load_dataset("kinetics400", tmp_path)
    assert index.classes == ("massaging person's head", "passing American football (in game)")
    videos = {Path(v.source).stem: v for v in index.videos}
    assert (videos["abc_000010_000020"].label, videos["abc_000010_000020"].splits["1"]) == (0, "train")
    assert (videos["zzz_000001_000011"].label, videos["zzz_000001_000011"].splits["1"]) == (1, "test")
    assert index.missing == (("gone_000000_000010", "not on disk"),)
    assert all(ID_RULE.match(v.video_id) for v in index.videos)


def test_colliding_names_get_distinct_ids(tmp_path):
    touch(tmp_path, "c/a b.mp4", "c/a_b.mp4", "c/x+y.mp4")
    ids = [v.video_id for v in load_dataset("folder", tmp_path).videos]
    assert len(set(ids)) == 3 and len({i.lower() for i in ids}) == 3
    assert "c__x_y.mp4" in ids  # no collision: no suffix


@pytest.mark.parametrize(
    "nasty",
    [
        "../../x.mp4",
        "/etc/passwd",
        ".hidden",
        "..",
        "a/../../b.mp4",
        "ü/日本語 video.mp4",
        "x" * 400 + ".mp4",
        "CON.mp4",
        "a\\b\\c.avi",
        "-leading-dash.mp4",
        " spaced .mp4",
    ],
)
def test_ids_are_always_safe_group_names(nasty):
    video_id = safe_video_id(nasty)
    assert ID_RULE.match(video_id) and len(video_id) <= 160 and "/" not in video_id and ".." != video_id


def test_unknown_kind_and_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="folder, ucf101, hmdb51, kinetics400"):
        load_dataset("youtube8m", tmp_path)
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset("folder", tmp_path / "nope")


def test_sample_format_reads_label_sets_and_splits_from_labels_csv(tmp_path):
    touch(
        tmp_path,
        "train/right/cat_right_000.mp4",
        "test/right/coffee_right_000.mp4",
        "train/zoom/cat_zoom_000.mp4",
        "train/zoom/stray.mp4",
    )
    (tmp_path / "labels.csv").write_text(
        "path,split,motion,scene\n"
        "train/right/cat_right_000.mp4,train,right,cat\n"
        "test/right/coffee_right_000.mp4,test,right,coffee\n"
        "train/zoom/cat_zoom_000.mp4,train,zoom,cat\n"
        "train/zoom/gone.mp4,train,zoom,cat\n"
        "../outside.mp4,test,zoom,cat\n"
    )
    index = load_dataset("sample", tmp_path)
    assert index.name == "sample" and index.classes == ("right", "zoom") and index.split_names == ("1",)
    assert dict(index.label_sets) == {"motion": ("right", "zoom"), "scene": ("cat", "coffee")}
    videos = {v.source: v for v in index.videos}
    coffee = videos["test/right/coffee_right_000.mp4"]
    assert (coffee.label, coffee.class_name, dict(coffee.splits)) == (0, "right", {"1": "test"})
    assert dict(coffee.labels) == {"motion": 0, "scene": 1}
    assert dict(coffee.label_names) == {"motion": "right", "scene": "coffee"}
    stray = videos["train/zoom/stray.mp4"]  # on disk, not in the CSV: unlabelled, in no split, named
    assert (stray.label, stray.class_name, dict(stray.labels)) == (-1, None, {"motion": -1, "scene": -1})
    assert dict(stray.splits) == {} and index.unlisted == ("train/zoom/stray.mp4",)
    assert set(index.missing) == {("train/zoom/gone.mp4", "not on disk"), ("../outside.mp4", "outside dataset root")}
    # Other formats carry no extra label sets.
    assert not load_dataset("folder", tmp_path).label_sets and not load_dataset("folder", tmp_path).videos[0].labels


def test_sample_format_refuses_a_bad_labels_csv(tmp_path):
    touch(tmp_path, "train/a/x.mp4")
    with pytest.raises(DatasetError, match="labels.csv not found"):
        load_dataset("sample", tmp_path)
    (tmp_path / "labels.csv").write_text("file,motion\ntrain/a/x.mp4,a\n")
    with pytest.raises(DatasetError, match="path,split,<label set>"):
        load_dataset("sample", tmp_path)
    (tmp_path / "labels.csv").write_text("path,split,motion\ntrain/a/x.mp4,val,a\n")
    with pytest.raises(DatasetError, match=r"labels.csv:2: split must be train or test"):
        load_dataset("sample", tmp_path)


def test_every_format_is_one_reader_in_the_table():
    """``load_dataset`` reads through one table: each format, one module of the package."""
    from comode.extract.datasets import DATASET_KINDS, READERS

    assert DATASET_KINDS == ("folder", "ucf101", "hmdb51", "kinetics400", "sample")
    for kind, reader in READERS.items():
        assert reader.__module__ == f"comode.extract.datasets.{kind}"


def test_the_extract_commands_defaults_are_the_settings_defaults():
    """`comode extract` writes none of ExtractSettings' defaults again: its options left alone
    build ExtractSettings()."""
    import inspect

    from comode.cli.common import parse_size
    from comode.cli.extract import extract
    from comode.extract.settings import ExtractSettings

    option = {name: p.default.default for name, p in inspect.signature(extract).parameters.items()}
    width, height = parse_size(option["size"], "--size")
    rgb_width, rgb_height = parse_size(option["rgb_size"], "--rgb-size")
    settings = ExtractSettings(
        codec=option["codec"],
        gop=option["gop"],
        width=width,
        height=height,
        resize=option["resize"],
        quality=option["quality"],
        rgb_width=rgb_width,
        rgb_height=rgb_height,
        timeout_s=option["timeout"],
        mv_backend=option["mv_backend"],
        memory_limit_mb=option["memory_limit"],
    )
    assert settings == ExtractSettings()
