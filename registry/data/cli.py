"""`zoo-run data ...` subcommands."""
import os

from registry import paths

BUILD_EPILOG = """examples:
  zoo-run data build ~/imagenet/train ~/imagenet-tfrecord --split train --workers 8
  zoo-run data build ~/imagenet/val ~/imagenet-tfrecord --split validation \\
      --labels_file imagenet_2012_validation_synset_labels.txt --synset_names imagenet_metadata.txt

Layouts: SRC/<class>/<image> (train, or validation), or a flat SRC with --labels_file (one class per
line in sorted file-name order, or filename,label CSV). Class ids are sorted class names 1..N, written
to OUT/labels.txt and reused by later builds into OUT. Read the records with label_offset=1.
A killed build resumes: re-run the same command."""


def cmd_build(args):
    import sys
    from registry.data import builder
    from registry.engine import interrupts
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        result = builder.build(args.src, args.out, args.split, num_shards=args.shards, labels_file=args.labels_file,
                               synset_names=args.synset_names, workers=args.workers, seed=args.seed,
                               max_pixels=args.max_image_pixels)
    except interrupts.Interrupted as stopped:   # one line, no traceback, the shell's status for the signal
        print("zoo-run data build: %s" % stopped, file=sys.stderr)
        return stopped.exit_status
    return 0 if result.written else 1


CHECK_EPILOG = """examples:
  zoo-run data check ~/flowers-tfrecord                       # bounds from DIR/labels.txt when it exists
  zoo-run data check ~/imagenet-tfrecord --num_classes 1000 --label_offset 1 --workers 8

Reads every record once: a tf.train.Example with image/encoded bytes that TensorFlow decodes and an
image/class/label inside label_offset..label_offset+num_classes-1. Every problem is printed with its shard,
record index and image/filename; the summary gives the label range seen and the label_offset / num_classes
it implies. Exit status 1 when a problem was found."""


def cmd_check(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # TF's own log of each broken JPEG: the check names them
    from registry import tf_compat
    from registry.data import check
    tf_compat.quiet()
    paths.require_dir(args.data_dir, "data dir")
    splits = [args.split] if args.split else None   # None: the splits the data set has
    problems = check.check(args.data_dir, splits, num_classes=args.num_classes, label_offset=args.label_offset,
                           workers=args.workers, max_pixels=args.max_image_pixels)
    return 1 if problems else 0


def max_pixels_argument(parser, what):
    """`--max_image_pixels N` (registry.data.images: the one pixel limit), checked when parsed."""
    import argparse
    from registry.data import images

    def pixels(text):
        try:
            return images.check_max_pixels(int(text.replace(",", "").replace("_", "")))
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err) if "must be" in str(err) else
                                             "expected a whole number of pixels, got %r" % text)

    parser.add_argument("--max_image_pixels", type=pixels, default=images.DEFAULT_MAX_IMAGE_PIXELS, metavar="N",
                        help="%s (width x height; default %s: above a 200 MP phone photo, below a 20000x20000 "
                             "decompression bomb)" % (what, "{:,}".format(images.DEFAULT_MAX_IMAGE_PIXELS)))


def register(subparsers):
    import argparse
    data = subparsers.add_parser("data", help="build TF-slim TFRecords from an image folder, check a data set",
                                 description="Dataset tools: convert image folders to TF-slim TFRecords (build), "
                                             "find every bad record of a TFRecord data set (check).")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    p = sub.add_parser("build", help="image folder -> TF-slim TFRecords (OUT/<split>-NNNNN-of-MMMMM)",
                       description="Converts an image folder into sharded TF-slim TFRecords: every image is "
                                   "decoded to check it, non-RGB-JPEG files are re-encoded as RGB JPEG, "
                                   "undecodable ones are skipped and listed in OUT/<split>-build-report.txt.",
                       epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=paths.expand, help="image folder: SRC/<class>/<image>, or flat with --labels_file")
    p.add_argument("out", type=paths.expand, help="output directory for the TFRecords (created if missing)")
    p.add_argument("--split", required=True, choices=["train", "validation"])
    p.add_argument("--shards", type=int, help="number of output files (default 1024 train, 128 validation; "
                                              "at most one per image)")
    p.add_argument("--labels_file", type=paths.expand, metavar="F",
                   help="labels of a flat SRC: one class per line in sorted file-name order, or filename,label CSV")
    p.add_argument("--synset_names", type=paths.expand, metavar="F",
                   help="'class<TAB>human-readable name' lines (ImageNet's imagenet_metadata.txt) for image/class/text")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="parallel processes (default: number of cores, at most 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle of files across shards (default 0)")
    max_pixels_argument(p, "images with more pixels are skipped unread and named in the report")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("check", help="decode every record of a TFRecord data set, naming each bad one",
                       description="Checks every record of DIR's splits (TF-slim TFRecords, as `zoo-run train` "
                                   "reads them) and names each bad one by shard, record and image/filename.",
                       epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", type=paths.expand, help="directory of TFRecords (train-*-of-*, validation-*-of-*, "
                                                        "or TF-slim dataset-converter names)")
    p.add_argument("--split", choices=["train", "validation"],
                   help="one split only, which must be there (default: the splits DIR has)")
    p.add_argument("--num_classes", type=int, help="labels must lie in label_offset..label_offset+num_classes-1 "
                                                  "(default: the classes of DIR/labels.txt; else any label >= 0)")
    p.add_argument("--label_offset", type=int, help="the label of class 0 (default: 0 when DIR/labels.txt numbers "
                                                   "a class 0, else 1)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="parallel processes, one file each (default: number of cores, at most 8)")
    max_pixels_argument(p, "records whose image has more pixels are problems, found from the header (the input "
                           "pipeline would decode them whole)")
    p.set_defaults(func=cmd_check)
