"""The bench's per-batch split (Spark's durationMs from the job's progress lines) and its memory reading."""

import os

from bench.cdc import batch_split, resident_bytes

LINE = ("2026-12-02 09:23:15,927 INFO spark_streaming: batch {n} progress: {rows} input rows, 1072.4 rows/s, lag "
        "maxOffsetsBehindLatest=0 avgOffsetsBehindLatest=0.0, ms addBatch={add} commitOffsets=100 getBatch=0 "
        "latestOffset=20 queryPlanning=30 triggerExecution={total} walCommit=90")


def test_the_split_is_the_median_of_the_steady_batches_only():
    warm = [LINE.format(n=n, rows=9000, add=5000, total=6000) for n in range(4)]  # the first 40%: left out
    steady = [LINE.format(n=4 + n, rows=700 + n, add=400 + n, total=700 + n) for n in range(6)]
    split = batch_split("\n".join(warm + steady + ["unrelated line"]))
    assert split["addBatch"] == 402 and split["triggerExecution"] == 702 and split["input_rows"] == 702
    assert split["walCommit"] == 90 and split["commitOffsets"] == 100


def test_resident_memory_of_this_process_is_read_and_a_gone_one_is_zero():
    assert resident_bytes(os.getpid()) > 10 * 2 ** 20
    assert resident_bytes(2 ** 22 + 12345) == 0


def test_the_high_water_mark_keeps_memory_already_given_back():
    ballast = bytearray(64 * 2 ** 20)  # zero-filled, so resident; freed, a block this large returns to the OS
    assert resident_bytes(os.getpid()) > 64 * 2 ** 20
    del ballast
    assert resident_bytes(os.getpid(), "VmHWM") - resident_bytes(os.getpid()) > 48 * 2 ** 20
