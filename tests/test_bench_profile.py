"""The pipeline profile's aggregation on fixed py-spy output, without any process: which stage each sampled
stack is booked to, and the shares the benchmark prints."""

from __future__ import annotations

import pytest

from bench.compare.profile import STAGES, PipelineProfile, parse_frame, profiled_argv, stage_of, stage_shares

ROOT = 'process 42:"python -m bench.compare --child pipeline";thread (0x7f01);_bootstrap (threading.py:995)'
RAW = "\n".join(
    [
        # gpg's output callback hashing the stream, then filling a part
        f"{ROOT};GPG._read_data (gnupg.py:1268);store (mongobackup/backup.py:88);"
        "MultipartUpload.write (mongobackup/s3_upload.py:80);MultipartUpload._digest (mongobackup/s3_upload.py:132) 30",
        f"{ROOT};GPG._read_data (gnupg.py:1268);store (mongobackup/backup.py:88);"
        "MultipartUpload.write (mongobackup/s3_upload.py:80);MultipartUpload._take (mongobackup/s3_upload.py:152) 10",
        # gpg's output read itself
        f"{ROOT};GPG._read_data (gnupg.py:1268) 20",
        # the copy thread: waiting on zstd, which pulls the archive from the source
        f"{ROOT};_copy_data (gnupg.py:156);CountingReader.readinto (mongobackup/streams.py:133) 25",
        f"{ROOT};_copy_data (gnupg.py:156);CountingReader.readinto (mongobackup/streams.py:133);"
        "IteratorReader.readinto (mongobackup/streams.py:100);IteratorReader._next_chunk (mongobackup/streams.py:80);"
        "_GeneratedArchive.chunks (bench/compare/children.py:120);"
        "ArchiveWriter._segments (mongobackup/archive/writer.py:138) 5",
        # a part worker: md5, then the request
        f"{ROOT};_worker (concurrent/futures/thread.py:83);MultipartUpload._upload_part (mongobackup/s3_upload.py:160);"
        "part_md5 (mongobackup/s3_upload.py:52) 5",
        f"{ROOT};_worker (concurrent/futures/thread.py:83);MultipartUpload._upload_part (mongobackup/s3_upload.py:160);"
        "BaseClient._make_api_call (botocore/client.py:1000);HTTPConnection.send (http/client.py:1009) 4",
        # something of ours no rule names
        f"{ROOT};transfer_database (mongobackup/backup.py:130) 1",
        # set-up, left out: the documents generated before the clock, imports, the S3 client being made
        'process 42:"python";<module> (bench/compare/__main__.py:1);_child_pipeline (bench/compare/children.py:129);'
        "make_document (bench/datasets.py:40);encode (bson/__init__.py:1085) 500",
        'process 42:"python";_find_and_load (<frozen importlib._bootstrap>:1176);<module> (botocore/client.py:1) 70',
        'process 42:"python";_child_pipeline (bench/compare/children.py:135);s3_client (mongobackup/s3.py:50);'
        "Session.client (boto3/session.py:300) 40",
        'process 42:"python";_child_pipeline (bench/compare/children.py:129) 9',
        # a process caught between Python frames, and a line that is not a sample
        'process 43:"gpg" 3',
        "garbage",
    ]
)


def test_frames_parse_into_function_and_file():
    assert parse_frame("CountingReader.readinto (mongobackup/streams.py:133)") == (
        "CountingReader.readinto",
        "mongobackup/streams.py",
    )
    assert parse_frame("<module> (<frozen importlib._bootstrap>:1176)") == (
        "<module>",
        "<frozen importlib._bootstrap>",
    )
    assert parse_frame("no location") == ("no location", "")


@pytest.mark.parametrize(
    ("leaf", "stage"),
    [
        ("MultipartUpload._digest (mongobackup/s3_upload.py:132)", "hashing"),
        ("part_md5 (mongobackup/s3_upload.py:52)", "hashing"),
        ("MultipartUpload._take (mongobackup/s3_upload.py:152)", "upload"),
        ("HTTPConnection.send (http/client.py:1009)", "upload"),
        ("CountingReader.readinto (mongobackup/streams.py:133)", "zstd"),
        ("IteratorReader.readinto (mongobackup/streams.py:100)", "source"),
        ("Crc64.update (mongobackup/archive/crc.py:43)", "archive framing"),
        ("GPG._read_data (gnupg.py:1268)", "gpg pipe I/O"),
    ],
)
def test_the_innermost_frame_a_rule_names_decides_the_stage(leaf, stage):
    # Under the gpg copy thread, so an outer frame (gnupg: gpg pipe I/O) matches too: the inner one wins.
    assert stage_of(["_copy_data (gnupg.py:156)", leaf]) == stage


def test_shares_are_of_the_pipeline_samples_only():
    shares, samples = stage_shares(RAW)
    assert list(shares) == list(STAGES)
    assert samples == 100  # the set-up's 619 samples, the frameless process and the bad line are left out
    assert shares == {
        "zstd": 0.25,
        "gpg pipe I/O": 0.20,
        "hashing": 0.35,
        "upload": 0.14,
        "archive framing": 0.05,
        "source": 0.0,
        "other": 0.01,
    }


def test_no_samples_gives_zero_shares_not_an_error():
    shares, samples = stage_shares("")
    assert samples == 0 and set(shares.values()) == {0.0}


def test_the_profile_line_says_where_the_time_went_or_why_there_is_none():
    profile = PipelineProfile(
        {"zstd": 0.5, "gpg pipe I/O": 0.25, "hashing": 0.25, "upload": 0.0}, 400, 2.0, server_cpu_s=0.7, our_cpu_s=1.5
    )
    line = profile.line()
    assert "400 samples" in line and "zstd 50%, gpg pipe I/O 25%, hashing 25%" in line and "upload" not in line
    assert "moto) over the run: 0.7 s vs ours (child + gpg) 1.5 s in 2.0 s" in line
    missing = PipelineProfile(unavailable="py-spy cannot sample here: Operation not permitted")
    assert missing.line() == "pipeline profile: not taken (py-spy cannot sample here: Operation not permitted)"


def test_the_child_runs_under_py_spy_without_being_paused():
    argv = profiled_argv(["python", "-m", "bench.compare"], "/tmp/x/stacks.txt", binary="/venv/bin/py-spy")
    assert argv[:2] == ["/venv/bin/py-spy", "record"]
    assert {"--nonblocking", "--subprocesses"} <= set(argv) and argv[argv.index("--format") + 1] == "raw"
    assert argv[argv.index("--") + 1 :] == ["python", "-m", "bench.compare"]
