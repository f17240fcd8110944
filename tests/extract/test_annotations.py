"""Issue 24: what the dataset adapters do with annotations that are less than complete and
unchanged, in the official layouts and file names of UCF101, HMDB51 and Kinetics-400.

Every case names what it did not take (missing, unlisted, skipped, incomplete), matches
where the intent is unambiguous, and never shifts a label.  The files are empty: the
adapters read names, not pixels (extraction of such stores is in test_relabel.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from comode.extract.datasets import load_dataset


def touch(root: Path, *relative: str) -> None:
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


# ---------------------------------------------------------------- UCF101

UCF_VIDEOS = [f"{c}/v_{c}_g{g:02d}_c0{i}" for c in ("ApplyEyeMakeup", "Archery") for g in (1, 8) for i in (1, 2)]


def write_ucf101(root: Path, extension: str = ".avi") -> None:
    """Two classes, split 1: group 8 trains, group 1 tests (as in the official lists)."""
    touch(root, *(v + extension for v in UCF_VIDEOS))
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (lists / "trainlist01.txt").write_text(
        "".join(f"{v}.avi {1 + v.startswith('Archery')}\n" for v in UCF_VIDEOS if "_g08_" in v)
    )
    (lists / "testlist01.txt").write_text("".join(f"{v}.avi\n" for v in UCF_VIDEOS if "_g01_" in v))


def _sides(index, split="1"):
    counts = {"train": 0, "test": 0}
    for video in index.videos:
        if split in video.splits:
            counts[video.splits[split]] += 1
    return counts


def test_ucf101_reencoded_to_mp4_matches_the_lists_by_stem(tmp_path):
    write_ucf101(tmp_path, ".mp4")
    index = load_dataset("ucf101", tmp_path)
    assert _sides(index) == {"train": 4, "test": 4} and not index.unlisted and not index.missing
    by_name = {Path(v.source).name: v for v in index.videos}
    assert (by_name["v_Archery_g08_c01.mp4"].label, dict(by_name["v_Archery_g08_c01.mp4"].splits)) == (
        1,
        {"1": "train"},
    )


def test_ucf101_stem_shared_by_two_files_is_missing_with_both_named(tmp_path):
    write_ucf101(tmp_path)
    (tmp_path / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi").unlink()
    touch(tmp_path, "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mp4", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mkv")
    index = load_dataset("ucf101", tmp_path)
    ((entry, reason),) = index.missing
    assert entry == "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi" and "several files" in reason
    assert "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mkv" in reason
    assert set(index.unlisted) == {
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mp4",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mkv",
    }


def test_ucf101_unlisted_videos_are_named_unlabelled_and_in_no_split(tmp_path):
    write_ucf101(tmp_path)
    touch(tmp_path, "Archery/v_Archery_g25_c07.avi", "extra/holiday.mp4")
    index = load_dataset("ucf101", tmp_path)
    assert index.unlisted == ("Archery/v_Archery_g25_c07.avi", "extra/holiday.mp4")
    extra = {v.source: v for v in index.videos}["Archery/v_Archery_g25_c07.avi"]
    assert (extra.label, extra.class_name, dict(extra.splits)) == (-1, None, {})
    assert _sides(index) == {"train": 4, "test": 4}  # the listed videos as before


def test_ucf101_missing_testlist_is_named(tmp_path):
    write_ucf101(tmp_path)
    (tmp_path / "ucfTrainTestlist/testlist01.txt").unlink()
    index = load_dataset("ucf101", tmp_path)
    ((file, purpose),) = index.incomplete
    assert file.endswith("ucfTrainTestlist/testlist01.txt") and "test side of split 1" in purpose
    assert index.unlisted == tuple(sorted(v + ".avi" for v in UCF_VIDEOS if "_g01_" in v))


def test_ucf101_complete_lists_say_nothing_is_missing(tmp_path):
    write_ucf101(tmp_path)
    index = load_dataset("ucf101", tmp_path)
    assert not (index.missing or index.unlisted or index.skipped or index.incomplete)
    assert sorted(Path(p).name for p in index.annotation_files) == ["classInd.txt", "testlist01.txt", "trainlist01.txt"]


# ---------------------------------------------------------------- HMDB51

HMDB_CLASSES = ("brush_hair", "shoot_bow", "shoot_gun", "smile")


def write_hmdb51(root: Path, classes=HMDB_CLASSES, extension: str = ".avi") -> None:
    """Official class folders, two videos each, split files 1-3 (the first trains, the second tests)."""
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True, exist_ok=True)
    for name in classes:
        videos = [f"{name}_{i}_u_nm_np1_fr_goo_{i}" for i in range(2)]
        touch(root, *(f"{name}/{v}{extension}" for v in videos))
        for split in "123":
            (splits / f"{name}_test_split{split}.txt").write_text(f"{videos[0]}.avi 1 \n{videos[1]}.avi 2 \n")


def test_hmdb51_class_without_split_files_keeps_every_index_and_is_named(tmp_path):
    write_hmdb51(tmp_path)
    complete = load_dataset("hmdb51", tmp_path)
    for split in "123":
        (tmp_path / f"testTrainMulti_7030_splits/shoot_bow_test_split{split}.txt").unlink()
    index = load_dataset("hmdb51", tmp_path)
    assert index.classes == complete.classes == HMDB_CLASSES
    labels = {v.source: (v.label, v.class_name) for v in index.videos}
    assert labels["shoot_gun/shoot_gun_0_u_nm_np1_fr_goo_0.avi"] == (2, "shoot_gun")  # not 1 (shoot_bow)
    assert labels["smile/smile_1_u_nm_np1_fr_goo_1.avi"] == (3, "smile")
    assert sorted(Path(f).name for f, _ in index.incomplete) == [f"shoot_bow_test_split{s}.txt" for s in "123"]
    assert index.unlisted == (
        "shoot_bow/shoot_bow_0_u_nm_np1_fr_goo_0.avi",
        "shoot_bow/shoot_bow_1_u_nm_np1_fr_goo_1.avi",
    )
    assert complete.fingerprint != index.fingerprint


def test_hmdb51_reencoded_to_mp4_matches_by_stem(tmp_path):
    write_hmdb51(tmp_path, extension=".mp4")
    index = load_dataset("hmdb51", tmp_path)
    assert {s: _sides(index, s) for s in "123"} == {s: {"train": 4, "test": 4} for s in "123"}
    assert not index.unlisted and not index.missing


# ---------------------------------------------------------------- Kinetics-400

HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


def test_kinetics_time_formats_in_file_names_and_rows(tmp_path):
    from comode.extract.datasets.kinetics400 import parse_time

    touch(
        tmp_path,
        "train/abseiling/aaaaaaaaaaa_9_19.mp4",  # unpadded
        "train/abseiling/bbbbbbbbb_b_61.0_71.0.mp4",  # decimals (and an id with "_")
        "train/abseiling/ccccccccccc_000104_000114.mp4",  # the row says 1:44,1:54
        "val/abseiling/ddddddddddd_000001_000011.mp4",
    )
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/train.csv").write_text(
        HEADER + "abseiling,aaaaaaaaaaa,9,19,train,0\nabseiling,bbbbbbbbb_b,61,71,train,0\n"
        "abseiling,ccccccccccc,1:44,1:54,train,0\nabseiling,eeeeeeeeeee,1:xx,2:00,train,0\n"
    )
    (tmp_path / "annotations/validate.csv").write_text(HEADER + "abseiling,ddddddddddd,1,11,validate,0\n")
    index = load_dataset("kinetics400", tmp_path)
    assert {Path(v.source).name: v.splits["1"] for v in index.videos} == {
        "aaaaaaaaaaa_9_19.mp4": "train",
        "bbbbbbbbb_b_61.0_71.0.mp4": "train",
        "ccccccccccc_000104_000114.mp4": "train",
        "ddddddddddd_000001_000011.mp4": "test",
    }
    assert index.missing == (("eeeeeeeeeee", "bad time_start/time_end '1:xx'/'2:00'"),)
    assert (parse_time("1:44"), parse_time("0:01:44"), parse_time("61.0"), parse_time(" 9 ")) == (104, 104, 61, 9)


def write_crawler(root: Path) -> None:
    """The ActivityNet crawler: its data/ folder holds K400 and K600 CSVs; K400 test CSV unlabelled."""
    touch(
        root,
        "train/abseiling/aaaaaaaaaaa_000000_000010.mp4",
        "train/zumba/bbbbbbbbbbb_000005_000015.mp4",
        "val/zumba/ccccccccccc_000002_000012.mp4",
        "test/ddddddddddd_000003_000013.mp4",
    )
    data = root / "data"
    data.mkdir()
    (data / "kinetics-400_train.csv").write_text(
        HEADER + "abseiling,aaaaaaaaaaa,0,10,train,0\nzumba,bbbbbbbbbbb,5,15,train,0\n"
    )
    (data / "kinetics-400_val.csv").write_text(HEADER + "zumba,ccccccccccc,2,12,val,0\n")
    (data / "kinetics-400_test.csv").write_text("youtube_id,time_start,time_end,split\nddddddddddd,3,13,test\n")
    (data / "kinetics-600_train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nadjusting glasses,xxxxxxxxxxx,0,10,train\n"
    )
    (data / "kinetics-600_val.csv").write_text(  # a K400 train clip listed as val by K600
        "label,youtube_id,time_start,time_end,split\nzumba,bbbbbbbbbbb,5,15,val\n"
    )


def test_kinetics_crawler_data_folder_reads_only_k400_and_an_unlabelled_test_csv(tmp_path):
    write_crawler(tmp_path)
    index = load_dataset("kinetics400", tmp_path, annotations=tmp_path / "data")
    assert index.classes == ("abseiling", "zumba")
    assert sorted(Path(p).name for p in index.annotation_files) == [
        "kinetics-400_test.csv",
        "kinetics-400_train.csv",
        "kinetics-400_val.csv",
    ]
    assert sorted(Path(f).name for f, _ in index.skipped) == ["kinetics-600_train.csv", "kinetics-600_val.csv"]
    assert index.split_names == ("1", "test")
    videos = {Path(v.source).name[:11]: v for v in index.videos}
    assert dict(videos["bbbbbbbbbbb"].splits) == {"1": "train", "test": "train"}
    assert (videos["ddddddddddd"].label, dict(videos["ddddddddddd"].splits)) == (-1, {"test": "test"})
    assert not index.unlisted and not index.missing and not index.incomplete


def test_kinetics_val_and_labelled_test_stay_apart(tmp_path):
    touch(tmp_path, "train/a/t0000000000_000000_000010.mp4", "val/a/v0000000000_000000_000010.mp4")
    touch(tmp_path, "test/a/s0000000000_000000_000010.mp4")
    (tmp_path / "annotations").mkdir()
    for name, split, prefix in (("train", "train", "t"), ("validate", "validate", "v"), ("test", "test", "s")):
        (tmp_path / f"annotations/{name}.csv").write_text(HEADER + f"a,{prefix}0000000000,0,10,{split},0\n")
    index = load_dataset("kinetics400", tmp_path)
    splits = {v.source.rsplit("/", 1)[0]: dict(v.splits) for v in index.videos}
    assert splits == {
        "train/a": {"1": "train", "test": "train"},
        "val/a": {"1": "test"},  # split 1 = train vs validation, what evaluate uses by default
        "test/a": {"test": "test"},
    }


def test_kinetics_without_val_csv_names_it_and_every_unlisted_video(tmp_path):
    touch(
        tmp_path,
        "train/a/t0000000000_000000_000010.mp4",
        "train/a/extra000000_000000_000010.mp4",
        "val/a/v0000000000_000000_000010.mp4",
    )
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/train.csv").write_text(HEADER + "a,t0000000000,0,10,train,0\n")
    index = load_dataset("kinetics400", tmp_path)
    assert index.unlisted == ("train/a/extra000000_000000_000010.mp4", "val/a/v0000000000_000000_000010.mp4")
    ((file, purpose),) = index.incomplete
    assert "validate.csv" in file and "split 1" in purpose
    unlisted = {v.source: v for v in index.videos}["val/a/v0000000000_000000_000010.mp4"]
    assert (unlisted.label, dict(unlisted.splits)) == (-1, {})


# ---------------------------------------------------------------- the fingerprint


def test_fingerprint_follows_the_annotations_content_not_their_place(tmp_path):
    write_ucf101(tmp_path / "a")
    first = load_dataset("ucf101", tmp_path / "a")
    moved = tmp_path / "lists elsewhere"
    shutil.copytree(tmp_path / "a/ucfTrainTestlist", moved)
    assert load_dataset("ucf101", tmp_path / "a", annotations=moved).fingerprint == first.fingerprint
    with (moved / "testlist01.txt").open("a") as handle:
        handle.write("Archery/v_Archery_g09_c01.avi\n")
    changed = load_dataset("ucf101", tmp_path / "a", annotations=moved)
    assert changed.fingerprint != first.fingerprint and first.fingerprint.startswith("sha256:")
    assert {v.annotations for v in changed.videos} == {changed.fingerprint}
