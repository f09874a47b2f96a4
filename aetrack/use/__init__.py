"""Using a trained model (loaded by `aetrack.models.loading`): reading and checking input images
(`inputs`), checking the model fits the command (`checks`), writing outputs (`outputs`), and the
operations behind `aetrack encode`, `reconstruct`, `denoise`, `score` and `sample` (`commands`).

Checking arguments and files uses only numpy and Pillow, so a bad URI, input or output fails
before TensorFlow loads.
"""

from aetrack.use.checks import check_decoder, check_image_model, encoder_for_codes
from aetrack.use.commands import encode, predict, reconstruction_errors, sample, score, transform
from aetrack.use.inputs import INPUT_FORMS, read_images, to_model_images
from aetrack.use.outputs import GRID_COLUMNS, GRID_MAX_IMAGES, check_output, write_grid, write_npy, write_samples_grid

__all__ = [
    "GRID_COLUMNS", "GRID_MAX_IMAGES", "INPUT_FORMS", "check_decoder", "check_image_model", "check_output",
    "encode", "encoder_for_codes", "predict", "read_images", "reconstruction_errors", "sample", "score",
    "to_model_images", "transform", "write_grid", "write_npy", "write_samples_grid",
]
