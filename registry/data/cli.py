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
    from registry.data import builder
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = builder.build(args.src, args.out, args.split, num_shards=args.shards, labels_file=args.labels_file,
                           synset_names=args.synset_names, workers=args.workers, seed=args.seed)
    return 0 if result.written else 1


def register(subparsers):
    import argparse
    data = subparsers.add_parser("data", help="build TF-slim TFRecords from an image folder",
                                 description="Dataset tools: convert image folders to TF-slim TFRecords.")
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
    p.set_defaults(func=cmd_build)
