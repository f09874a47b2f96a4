"""Using a trained model (loaded by `aetrack.models.loading`): the samples it takes (`specs`: its
SampleSpec), reading and checking inputs of that shape (`inputs`), checking the model fits the
command (`checks`), writing outputs (`outputs`), and the operations behind `aetrack encode`,
`reconstruct`, `denoise`, `score` and `sample` (`commands`).

Checking arguments and files uses only numpy, Pillow and pandas, so a bad URI, input or output
fails before TensorFlow loads.
"""

from aetrack.use.checks import MODEL, check_decoder, check_image_model, check_sample_model, encoder_for_codes
from aetrack.use.commands import encode, load_with_spec, predict, reconstruction_errors, sample, score, transform
from aetrack.use.inputs import (INPUT_FORMS, InputFile, expected_shapes, input_forms, open_inputs, read_images,
                                read_inputs, to_model_inputs, to_model_rows)
from aetrack.use.outputs import (GRID_COLUMNS, GRID_MAX_IMAGES, check_output, check_sample_output, rows_grid,
                                 sample_shaped, write_grid, write_npy, write_samples, write_samples_grid, write_table)
from aetrack.use.specs import SAMPLE_SPEC_KEY, fallback_spec, model_spec, spec_from_metadata

__all__ = [
    "GRID_COLUMNS", "GRID_MAX_IMAGES", "INPUT_FORMS", "MODEL", "SAMPLE_SPEC_KEY", "InputFile", "check_decoder",
    "check_image_model", "check_output", "check_sample_model", "check_sample_output", "encode", "encoder_for_codes",
    "expected_shapes", "fallback_spec", "input_forms", "load_with_spec", "model_spec", "open_inputs", "predict",
    "read_images", "read_inputs", "reconstruction_errors", "rows_grid", "sample", "sample_shaped", "score",
    "spec_from_metadata", "to_model_inputs", "to_model_rows", "transform", "write_grid", "write_npy", "write_samples",
    "write_samples_grid", "write_table",
]
