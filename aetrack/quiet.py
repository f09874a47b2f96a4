"""Keep TensorFlow's C++ start-up lines (oneDNN and CUDA notices, "failed call to cuInit") off the
user's terminal, unless `--debug` or the user set TF_CPP_MIN_LOG_LEVEL themselves.

TF_CPP_MIN_LOG_LEVEL alone is not enough with TensorFlow 2.21: most of those lines are written to
stderr while its shared libraries load, before the level applies ("All log messages before
absl::InitializeLog() is called are written to STDERR"). So the CLI also loads TensorFlow with
file descriptor 2 captured, and replays what was captured if loading fails.
"""

from __future__ import annotations

import os
import sys
import tempfile

TF_LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_TF_LOG_LEVEL = "3"  # errors too: "failed call to cuInit" on a machine without a GPU is one
_quiet = False


def quiet_tensorflow(debug: bool) -> None:
    """Called by the CLI before anything imports TensorFlow: quiet unless `debug` or the level is set."""
    global _quiet
    if debug or TF_LOG_LEVEL_VARIABLE in os.environ:
        _quiet = False
        return
    os.environ[TF_LOG_LEVEL_VARIABLE] = QUIET_TF_LOG_LEVEL
    _quiet = True


def load_tensorflow() -> None:
    """Import TensorFlow and let it find its devices (when its start-up lines are written); when
    quiet, with stderr (the file descriptor, which C++ writes to) captured meanwhile."""
    if not _quiet or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
