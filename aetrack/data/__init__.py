"""What a sample is (`spec`) and where samples come from (`sources`)."""

from aetrack.data.sources import (IMAGE_PIXELS, IMAGE_SIDE, Dataset, anomalous_test, check_dataset_spec, dataset_for, flatten,
                                  load_dataset)
from aetrack.data.spec import MNIST_SPEC, SampleSpec, image_spec

__all__ = ["IMAGE_PIXELS", "IMAGE_SIDE", "Dataset", "MNIST_SPEC", "anomalous_test", "SampleSpec", "check_dataset_spec", "dataset_for",
           "flatten", "image_spec", "load_dataset"]
