#!/usr/bin/env python3
"""Builds the haystack text of testdata/haystack from Debian's King James Bible.

The King James Version (1611) is in the public domain. Debian ships it in the
packages bible-kjv-text (the compressed text) and bible-kjv (its reader):

    apt-get install bible-kjv
    bible -l0 "Gen1:1-Rev22:21" > kjv.txt
    python3 tools/train/prep_text.py kjv.txt testdata/haystack

Books are split into three disjoint sets so that training, calibration and
evaluation never share a haystack:
    train.txt  Genesis, Exodus, Joshua, Judges, Ruth, 1-2 Samuel, 1-2 Kings
    calib.txt  Job, Proverbs
    eval.txt   Matthew, Mark
Each chapter becomes one line of prose (verse numbers dropped), ASCII only.
"""
import re
import sys

SPLITS = {
    "train.txt": ["Genesis", "Exodus", "Joshua", "Judges", "Ruth", "1 Samuel", "2 Samuel", "1 Kings", "2 Kings"],
    "calib.txt": ["Job", "Proverbs"],
    "eval.txt": ["Matthew", "Mark"],
}


def main(src, outdir):
    chapters = {}  # book -> list of chapter texts
    book, verses = None, []

    def flush():
        if book is not None and verses:
            chapters.setdefault(book, []).append(" ".join(verses))

    for line in open(src, encoding="latin-1"):
        m = re.match(r"^(\S.*?) (\d+)\s*$", line)
        if m:
            flush()
            book, verses = m.group(1), []
            continue
        m = re.match(r"^\s*\d+\s+(.*\S)\s*$", line)
        if m:
            text = m.group(1).encode("ascii", "ignore").decode()
            verses.append(re.sub(r"\s+", " ", text))
    flush()
    for name, books in SPLITS.items():
        with open(f"{outdir}/{name}", "w") as f:
            for b in books:
                for ch in chapters[b]:
                    f.write(ch + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
