"""wgan.cli.run_stage: every error is one line, Ctrl-C exits 130 quietly, tracebacks on demand."""

import sys

import pytest
import tensorflow as tf

from wgan.cli import run_stage, thread_env
from wgan.config import ParamsError


def _exit_of(main, monkeypatch, argv=("one",)) -> SystemExit:
    monkeypatch.setattr(sys, "argv", ["stage.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        run_stage(main, "stage.py ARG", 1)
    return exit_.value


def _raising(err: BaseException):
    def main(argv):
        raise err

    return main


def _data_loss_error(tmp_path) -> tf.errors.OpError:
    """The error TensorFlow raises for a file that is not gzip, with its node noise."""
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    try:
        next(iter(tf.data.TFRecordDataset(str(tmp_path / "bad.gz"), compression_type="GZIP")))
    except tf.errors.OpError as err:
        return err
    raise AssertionError("TensorFlow read a file that is not gzip")


def _noted(err: BaseException, note: str) -> BaseException:
    err.add_note(note)
    return err


TRACEBACK_HINT = "; set WGAN_TRACEBACK=1 for the traceback"


@pytest.mark.parametrize("err, line", [
    (ValueError("meta.json: bad\nshape"), "error: meta.json: bad shape"),
    (FileNotFoundError(2, "No such file or directory", "x.npz"),
     "error: [Errno 2] No such file or directory: 'x.npz'"),
    (ParamsError("train.steps: must be >= 1"), "error: train.steps: must be >= 1"),
    (_noted(ValueError("bad sample 3"), "while writing train-00001"),
     "error: bad sample 3 (while writing train-00001)"),
    (KeyError("shape"), f"error: KeyError: 'shape'{TRACEBACK_HINT}"),
    (MemoryError(), f"error: MemoryError{TRACEBACK_HINT}"),
    (TypeError("x" * 2000), f"error: TypeError: {'x' * 500}…{TRACEBACK_HINT}"),
])
def test_every_error_is_one_line(err, line, monkeypatch):
    exit_ = _exit_of(_raising(err), monkeypatch)
    assert exit_.code == line


def test_a_tensorflow_error_is_one_line_without_its_node_noise(tmp_path, monkeypatch):
    err = _data_loss_error(tmp_path)
    assert "{{function_node" in str(err)  # what the line must not show
    exit_ = _exit_of(_raising(err), monkeypatch)
    assert exit_.code == ("error: DataLossError: inflate() failed with error -3: incorrect "
                          f"header check{TRACEBACK_HINT}")


def test_ctrl_c_exits_130_quietly_and_a_traceback_is_shown_on_demand(monkeypatch, capsys):
    assert _exit_of(_raising(KeyboardInterrupt()), monkeypatch).code == 130
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("WGAN_TRACEBACK", "1")
    for err in (KeyError("shape"), KeyboardInterrupt()):
        monkeypatch.setattr(sys, "argv", ["stage.py", "one"])
        with pytest.raises(type(err)):
            run_stage(_raising(err), "stage.py ARG", 1)


def test_wrong_argv_prints_the_usage(monkeypatch):
    assert _exit_of(_raising(AssertionError()), monkeypatch, ()).code == "usage: stage.py ARG"


@pytest.mark.parametrize(("environ", "cpus", "expected"), [
    ({}, 8, {}),
    ({"WGAN_JOBS": "2"}, 8, {"TF_NUM_INTRAOP_THREADS": "4", "TF_NUM_INTEROP_THREADS": "4"}),
    ({"WGAN_JOBS": "4"}, 2, {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}),
    ({"WGAN_JOBS": "2", "TF_NUM_INTRAOP_THREADS": "3"}, 8, {"TF_NUM_INTEROP_THREADS": "4"}),
])
def test_experiments_sharing_the_machine_split_its_cores(environ, cpus, expected):
    assert thread_env(environ, cpus) == expected


def test_a_bad_wgan_jobs_is_one_clear_error():
    with pytest.raises(ValueError, match="WGAN_JOBS: 'two' is not a positive integer"):
        thread_env({"WGAN_JOBS": "two"}, 2)
