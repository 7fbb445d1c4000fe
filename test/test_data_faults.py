"""`zoo-run data build` and `data check` on sources and disks as users have them (issue 24): links that lead back
into the source, the same image under two classes, names that are not UTF-8, a stop signal to a parallel build,
a full disk."""
import glob
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from registry.data import builder, check, tfrecord
from registry.engine import storage


def _jpeg(path, seed, size=(24, 20), noise=False):
    rng = np.random.RandomState(seed)
    if noise:
        pixels = rng.randint(0, 256, (size[1], size[0], 3)).astype(np.uint8)
    else:
        pixels = np.full((size[1], size[0], 3), rng.randint(0, 256, 3), np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=95)


def _source(root, counts, noise=False, size=(24, 20)):
    """root/<class>/<class>_<i>.jpg: counts {class: number of images}, each image different."""
    seed = 0
    for name, count in sorted(counts.items()):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(count):
            seed += 1
            _jpeg(os.path.join(root, name, "%s_%d.jpg" % (name, i)), seed, size, noise)
    return root


def _records(out, split="train"):
    """[(synset, filename)] of every record of `split` in `out`."""
    found = []
    for path in sorted(glob.glob(os.path.join(out, tfrecord.split_pattern(split)))):
        for raw in tf.compat.v1.io.tf_record_iterator(path):
            feature = tf.train.Example.FromString(raw).features.feature
            found.append((feature["image/class/synset"].bytes_list.value[0].decode(),
                          feature["image/filename"].bytes_list.value[0].decode()))
    return sorted(found)


# --- 1: links under SRC, identical images under two classes --------------------------------------------------------

def test_1_links_back_into_src_are_named_and_every_file_is_written_once_for_its_class(tmp_path):
    src = _source(str(tmp_path / "src"), {"apple": 2, "banana": 3, "cherry": 1})
    outside = tmp_path / "more_cherries"
    outside.mkdir()
    _jpeg(str(outside / "far.jpg"), 99)
    os.symlink("..", os.path.join(src, "cherry", "loop"))                           # back to SRC
    os.symlink(os.path.join(src, "banana"), os.path.join(src, "cherry", "bananas"))  # into another class
    os.symlink(".", os.path.join(src, "apple", "self"))                              # a loop in its own class
    os.symlink(str(outside), os.path.join(src, "cherry", "far"))                     # out of SRC: followed
    os.symlink(str(outside), os.path.join(src, "cherry", "zz_far_again"))            # the same, a second time
    os.symlink(os.path.join(src, "banana", "banana_0.jpg"), os.path.join(src, "apple", "a_banana.jpg"))
    out = str(tmp_path / "out")
    stream = io.StringIO()
    result = builder.build(src, out, "train", num_shards=2, workers=1, stream=stream)
    assert _records(out) == [("apple", "apple_0.jpg"), ("apple", "apple_1.jpg"), ("banana", "banana_0.jpg"),
                             ("banana", "banana_1.jpg"), ("banana", "banana_2.jpg"), ("cherry", "cherry_0.jpg"),
                             ("cherry", "far.jpg")]
    links = dict((os.path.relpath(p, src), reason) for p, reason in result.links)
    assert links == {
        "cherry/loop": "it leads back to SRC or above it (a loop): not followed",
        "cherry/bananas": "it leads into the folder of class banana: those files are listed once, for banana: "
                          "not followed",
        "apple/self": "it leads into its own class folder (a loop, or a second name for files listed where they "
                      "are): not followed",
        "cherry/far": "a link out of SRC, followed: its files are listed for class cherry",
        "cherry/zz_far_again": "it leads to files listed already through another link (%s): not followed" % outside,
        "apple/a_banana.jpg": "it leads into the folder of class banana: those files are listed once, for banana: "
                              "not followed"}
    printed = stream.getvalue()
    assert "note: link %s/cherry/loop -> %s: it leads back to SRC or above it (a loop): not followed" % (
        src, os.path.realpath(src)) in printed
    with open(result.report_path) as f:
        report = f.read()
    assert "files under the source: 7 = 7 written + 0 skipped + 0 ignored" in report
    assert "links under the source: 6 (5 not followed)" in report
    assert "  %s/cherry/loop -> %s: it leads back to SRC" % (src, os.path.realpath(src)) in report


def test_1_identical_bytes_under_two_classes_are_a_note_of_build_and_check(tmp_path, capsys):
    src = _source(str(tmp_path / "src"), {"cat": 2, "dog": 2})
    shutil.copyfile(os.path.join(src, "cat", "cat_1.jpg"), os.path.join(src, "dog", "copy.jpg"))
    out = str(tmp_path / "out")
    stream = io.StringIO()
    result = builder.build(src, out, "train", num_shards=2, workers=1, stream=stream)
    assert result.written == 5
    pair = [("cat", os.path.join(src, "cat", "cat_1.jpg")), ("dog", os.path.join(src, "dog", "copy.jpg"))]
    assert result.duplicates == [pair]
    assert ("note: 1 image(s) have identical bytes under different classes (each is written as it is, with its "
            "folder's class; remove the wrong copies if that is not meant):\n  class cat: %s, class dog: %s\n"
            % (pair[0][1], pair[1][1])) in stream.getvalue()
    with open(result.report_path) as f:
        assert "identical images under different classes (a note: the same bytes carry two labels): 1\n" in f.read()

    assert check.check(out) == 0                    # a note, not a problem
    printed = capsys.readouterr().out
    match = re.search(r"note: 1 image\(s\) have identical bytes under different labels.*\n  (.*)\n", printed)
    assert match, printed
    assert re.fullmatch(r"label 1 \(record \d of %s/train-0000\d-of-00002, image/filename cat_1\.jpg\), label 2 "
                        r"\(record \d of %s/train-0000\d-of-00002, image/filename copy\.jpg\)"
                        % (re.escape(out), re.escape(out)), match.group(1)), match.group(1)


# --- 3: names that are not UTF-8 --------------------------------------------------------------------------------

def test_3_file_and_class_names_that_are_not_utf8_are_written_with_escaped_names(tmp_path):
    src = _source(str(tmp_path / "src"), {"plain": 2})
    odd_class = os.path.join(os.fsencode(src), b"b\xe4r")                    # Latin-1 names, as old archives have
    os.makedirs(odd_class)
    _jpeg(os.fsdecode(os.path.join(odd_class, b"caf\xe9.jpg")), 7)
    _jpeg(os.fsdecode(os.path.join(os.fsencode(src), b"plain", b"na\xefve.jpg")), 8)
    with open(os.path.join(odd_class, b"broken \xff.jpg"), "wb") as f:
        f.write(b"not a jpeg")
    out = str(tmp_path / "out")
    stream = io.StringIO()
    result = builder.build(src, out, "train", num_shards=2, workers=1, stream=stream)
    assert result.written == 4 and result.labels == {"b\\xe4r": 1, "plain": 2}
    assert _records(out) == [("b\\xe4r", "caf\\xe9.jpg"), ("plain", "na\\xefve.jpg"), ("plain", "plain_0.jpg"),
                             ("plain", "plain_1.jpg")]
    assert [path for path, _ in result.skipped] == [os.path.join(src, "b\\xe4r", "broken \\xff.jpg")]
    assert tfrecord.read_labels_file(out) == {1: "b\\xe4r", 2: "plain"}
    with open(result.report_path, encoding="utf-8") as f:
        assert "  %s/b\\xe4r/broken \\xff.jpg: " % src in f.read()
    assert "  skipped %s/b\\xe4r/broken \\xff.jpg: " % src in stream.getvalue()


# --- 4: a full disk ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("checked", [True, False], ids=["space checked first", "the write itself fails"])
def test_4_a_full_disk_is_a_clear_error_naming_the_space_needed_and_the_rerun_resumes(tmp_path, monkeypatch, checked):
    """A 3 MB file system holds the first of three 1.1 MB shards, not the second with the 1 MB margin (or, without
    that check, two, not the third)."""
    from test_run_faults import _mounted
    src = _source(str(tmp_path / "src"), {"a": 30, "b": 30}, noise=True, size=(216, 216))
    shards = 3
    if not checked:
        monkeypatch.setattr(storage, "check_space", lambda *args, **kwargs: None)
    with _mounted("-t", "tmpfs", "-o", "size=3m", "tmpfs", target=str(tmp_path / "small")) as small:
        out = os.path.join(small, "out")
        with pytest.raises(storage.StorageError) as err:
            builder.build(src, out, "train", num_shards=shards, workers=1, stream=io.StringIO())
        message = str(err.value)
        match = re.match(r"no space left in %s for train shard train-0000(\d)-of-0000%d\. It needs about ([\d.]+) MB; "
                         r"([\d.]+) (MB|KB|bytes) are free\. Free space on that disk, or build into an OUT directory "
                         r"on a larger disk; then rerun the same command: the complete train shards in %s are kept "
                         r"and the build resumes\.$" % (re.escape(out), shards, re.escape(out)), message)
        assert match, message
        assert [n for n in os.listdir(out) if "tmp" in n] == []
        complete = glob.glob(os.path.join(out, "train-*"))
        assert len(complete) == int(match.group(1)) == (1 if checked else 2)
        subprocess.run(["mount", "-o", "remount,size=16m", small], check=True)
        stream = io.StringIO()
        result = builder.build(src, out, "train", num_shards=shards, workers=1, stream=stream)
        assert "train: %d of %d shards already complete (earlier run)" % (len(complete), shards) in stream.getvalue()
        assert result.written == 60 and len(_records(out)) == 60


# --- 2: a stop signal to a parallel build -----------------------------------------------------------------------

def _children(pid):
    """Pids of the child processes of `pid` (Linux /proc)."""
    found = []
    for task in glob.glob("/proc/%d/task/*/children" % pid):
        try:
            with open(task) as f:
                found += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return found


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"     # a zombie has ended
    except OSError:
        return False


def _start_and_stop(command, out, signum, shards):
    """Starts `command`, sends `signum` to it once its first shard is complete; returns (exit status, stderr,
    shards complete when it exited, its child pids seen)."""
    with open(os.path.join(out + ".stderr"), "w+") as stderr:   # not a pipe: an orphan would hold it open
        build = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, universal_newlines=True)
        children, deadline = set(), time.time() + 240
        while not glob.glob(os.path.join(out, "train-*")):
            children.update(_children(build.pid))
            assert build.poll() is None and time.time() < deadline, "the build ended or wrote no shard in 240 s"
            time.sleep(0.02)
        children.update(_children(build.pid))
        build.send_signal(signum)
        try:
            build.wait(timeout=60)
        except subprocess.TimeoutExpired:
            build.kill()
            raise AssertionError("the build did not stop within 60 s of %s" % signum)
        complete = len(glob.glob(os.path.join(out, "train-*")))
        deadline = time.time() + 20
        while any(_alive(pid) for pid in children) and time.time() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if _alive(pid)], "worker processes outlived the build by 20 s"
        after = len(glob.glob(os.path.join(out, "train-*")))
        assert after == complete, "its workers converted on after the build exited: %d -> %d shards" % (complete,
                                                                                                          after)
        assert complete < shards, "the build finished before the signal reached it: give it more work"
        stderr.seek(0)
        return build.returncode, stderr.read(), complete, children


def test_2_a_signal_to_a_parallel_build_stops_its_workers_and_the_rerun_resumes(tmp_path, zoo_run):
    """SIGTERM to the parent: it stops its workers and exits 143 with a resume line; SIGKILL to the parent: its
    workers notice and stop by themselves. Nothing converts on, no partial shard stays, the rerun completes."""
    shards = 60
    src = _source(str(tmp_path / "src"), {"a": 60, "b": 60}, size=(1600, 1200))   # TF decodes each in ~15 ms
    out = str(tmp_path / "out")
    command = [zoo_run, "data", "build", src, out, "--split", "train", "--workers", "2", "--shards", str(shards)]
    status, err, complete, children = _start_and_stop(command, out, signal.SIGTERM, shards)
    assert status == 143 and len(children) >= 2, (status, err)
    assert err.strip().splitlines()[-1] == (
        "zoo-run data build: stopped by SIGTERM with %d of %d train shards complete in %s; rerun the same command "
        "to resume" % (complete, shards, out))
    assert [n for n in os.listdir(out) if ".tmp" in n] == []

    status, _, complete, _ = _start_and_stop(command, out, signal.SIGKILL, shards)
    assert status == -signal.SIGKILL

    one_process = command[:-4] + ["--workers", "1"] + command[-2:]   # the same build (one TF import fewer)
    done = subprocess.run(one_process, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout
    assert "train: %d of %d shards already complete (earlier run)" % (complete, shards) in done.stdout
    assert len(_records(out)) == 120
