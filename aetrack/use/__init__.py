"""Using a trained model (loaded by `aetrack.models.loading`): the samples it takes (`specs`: its
SampleSpec), reading and checking inputs of that shape (`inputs`), checking the model fits the
command (`checks`), writing outputs (`outputs`), and the operations behind `aetrack encode`,
`reconstruct`, `denoise`, `score` and `sample` (`commands`), anomaly scores, stored
thresholds and flags (`anomaly_io`), and `aetrack export` (`export`: SavedModel, TFLite, ONNX).

Checking arguments and files uses only numpy, Pillow and pandas, so a bad URI, input or output
fails before TensorFlow loads.
"""

from aetrack.use.anomaly_io import ANOMALY_KEY, THRESHOLD_TAG, Threshold, check_threshold, stored_threshold
from aetrack.use.checks import MODEL, check_decoder, check_image_model, check_sample_model, encoder_for_codes
from aetrack.use.commands import (Scored, encode, load_with_spec, predict, reconstruction_errors, sample, score,
                                  score_samples, transform)
from aetrack.use.export import FORMATS, QUANTIZATIONS, Exported, check_export, export_model
from aetrack.use.inputs import (INPUT_FORMS, InputFile, expected_shapes, input_forms, open_inputs, read_images,
                                read_inputs, to_model_inputs, to_model_rows)
from aetrack.use.outputs import (GRID_COLUMNS, GRID_MAX_IMAGES, check_output, check_sample_output, rows_grid,
                                 sample_shaped, write_grid, write_npy, write_samples, write_samples_grid, write_table)
from aetrack.use.specs import SAMPLE_SPEC_KEY, fallback_spec, model_spec, spec_from_metadata

__all__ = [
    "ANOMALY_KEY", "THRESHOLD_TAG", "Scored", "Threshold", "check_threshold", "score_samples", "stored_threshold",
    "GRID_COLUMNS", "GRID_MAX_IMAGES", "INPUT_FORMS", "MODEL", "SAMPLE_SPEC_KEY", "InputFile", "check_decoder",
    "check_image_model", "check_output", "check_sample_model", "check_sample_output", "encode", "encoder_for_codes",
    "expected_shapes", "Exported", "FORMATS", "QUANTIZATIONS", "check_export", "export_model", "fallback_spec", "input_forms", "load_with_spec", "model_spec", "open_inputs", "predict",
    "read_images", "read_inputs", "reconstruction_errors", "rows_grid", "sample", "sample_shaped", "score",
    "spec_from_metadata", "to_model_inputs", "to_model_rows", "transform", "write_grid", "write_npy", "write_samples",
    "write_samples_grid", "write_table",
]
