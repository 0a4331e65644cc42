"""The models (teacher, student, conversion). The only place TensorFlow is imported.

Importing this package first makes TensorFlow quiet *before* TensorFlow is imported (its C++ logging,
absl's pre-init notice, oneDNN's banner and Python deprecation warnings), so `callmark` commands and
`make demo` print only their own lines. `native_output_silenced()` additionally captures what the TFLite
converter prints straight to the process's stdout/stderr (calibration banners); it is shown again
only when the wrapped block fails.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings

_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ INFO/WARNING/ERROR logs
    "TF_ENABLE_ONEDNN_OPTS": "0",  # no oneDNN banner (and bit-stable CPU kernels)
    "ABSL_MIN_LOG_LEVEL": "3",
    "GLOG_minloglevel": "3",
    "KERAS_BACKEND": "tensorflow",
}
for _k, _v in _QUIET_ENV.items():
    os.environ.setdefault(_k, _v)
for _mod in ("tensorflow", "keras", "tf_keras", "absl", "google.protobuf", "ml_dtypes"):
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=_mod)
    warnings.filterwarnings("ignore", category=FutureWarning, module=_mod)
warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated.*")


def quiet_tensorflow() -> None:
    """After importing TensorFlow: route its Python logger and absl's to errors only."""
    import logging

    for name in ("tensorflow", "absl", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl ships with TensorFlow; without it there is nothing to quiet
        pass


@contextlib.contextmanager
def native_output_silenced():
    """Capture file descriptors 1 and 2 for the block (native code prints there directly); replay the
    captured text to stderr only if the block raises."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if not ok:
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", "replace")[-4000:])


def import_tensorflow():
    """`import tensorflow` with its import-time native banners captured and its loggers quietened."""
    with native_output_silenced():
        import tensorflow as tf
    quiet_tensorflow()
    return tf
