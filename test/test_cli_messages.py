"""What the commands say while they work (issue 15, item 15): one line about the model, no
transformers noise, and progress before every long step."""
import subprocess
import sys


def sam3_ros(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "sam3_ros.cli", *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_export_says_what_it_does_and_nothing_else(tmp_path):
    done = sam3_ros("export", "--tiny", "--output", str(tmp_path / "engines"), "--components", "vision",
                    "--no-verify")
    said = done.stderr + done.stdout
    assert "[transformers]" not in said
    assert said.count("RANDOM WEIGHTS") == 1
    assert said.index("loading SAM 3") < said.index("vision (1/1): exporting") < said.index("vision: vision.onnx in")


def test_bench_says_what_it_measures_before_each_step():
    done = sam3_ros("bench", "--tiny", "--tracks", "1", "2", "--frames", "1", "--warmup", "0", "--image", "48", "64")
    assert done.stderr.count("RANDOM WEIGHTS") + done.stdout.count("RANDOM WEIGHTS") == 2  # the report repeats it
    assert "loading SAM 3: the tiny random-init model" in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("measuring with")] == [
        "measuring with 1 live track(s): 0 warm-up + 1 timed frames ...",
        "measuring with 2 live track(s): 0 warm-up + 1 timed frames ..."]
